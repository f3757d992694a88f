"""A farm's timeline as SVG: a row per engine slot, a bar per job coloured by architecture,
the critical chain outlined, so that where a farm idles shows as empty row."""
from __future__ import annotations

from html import escape
from typing import Mapping

from testbed.virtualfarm import Run, Schedule

COLOURS = {"amd64": "#4e79a7", "arm32v5": "#f28e2b", "arm32v6": "#ffbe7d", "arm32v7": "#e15759",
           "arm64v8": "#76b7b2", "i386": "#59a14f", "ppc64le": "#edc948", "riscv64": "#b07aa1",
           "s390x": "#ff9da7", "windows-amd64": "#9c755f"}
_LABEL, _ROW, _WIDTH, _TOP = 190, 14, 1100, 40


def timeline(title: str, schedule: Schedule, critical: list[Run],
             platform_of: Mapping[str, str]) -> str:
    """The SVG text. `platform_of`: job key → platform name (its colour)."""
    rows = _rows(schedule)
    span = max(schedule.makespan, 1.0)
    scale = _WIDTH / span
    height = _TOP + _ROW * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL + _WIDTH + 20}" '
           f'height="{height}" font-family="sans-serif" font-size="10">',
           f'<text x="4" y="14" font-size="13">{escape(title)}</text>']
    out += _axis(span, scale, height)
    on_chain = {(run.key, run.engine, run.start) for run in critical}
    for index, (label, runs) in enumerate(rows):
        y = _TOP + index * _ROW
        out.append(f'<text x="4" y="{y + 10}">{escape(label)}</text>')
        for run in runs:
            colour = COLOURS.get(platform_of[run.key], "#bab0ac")
            edge = ' stroke="#000" stroke-width="2"' if (run.key, run.engine, run.start) \
                in on_chain else ""
            fill = f'fill="{colour}"' + (' fill-opacity="0.35"' if run.lost else "")
            out.append(f'<rect x="{_LABEL + run.start * scale:.1f}" y="{y + 1}" '
                       f'width="{max((run.end - run.start) * scale, 0.5):.1f}" '
                       f'height="{_ROW - 2}" {fill}{edge}><title>{escape(run.key)} '
                       f'{run.end - run.start:.0f} min{" (engine lost)" if run.lost else ""}'
                       f'</title></rect>')
    out += _legend(height - 14)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _rows(schedule: Schedule) -> list[tuple[str, list[Run]]]:
    """Each engine's runs spread over its slots, in the builders' order."""
    rows = []
    for engine, slots in schedule.slots.items():
        lanes: list[list[Run]] = [[] for _ in range(slots)]
        for run in sorted((r for r in schedule.runs if r.engine == engine), key=lambda r: r.start):
            lane = next(lane for lane in lanes if not lane or lane[-1].end <= run.start)
            lane.append(run)
        rows += [(engine if slots == 1 else f"{engine} #{n + 1}", lane)
                 for n, lane in enumerate(lanes)]
    return rows


def _axis(span: float, scale: float, height: int) -> list[str]:
    step = next(s for s in (60, 120, 240, 480, 960, 1920) if span / s <= 16)
    lines = []
    for minute in range(0, int(span) + 1, step):
        x = _LABEL + minute * scale
        lines.append(f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 30}" '
                     f'stroke="#ddd"/><text x="{x + 2:.1f}" y="{_TOP - 8}">{minute // 60} h</text>')
    return lines


def _legend(y: int) -> list[str]:
    items, x = [], _LABEL
    for name, colour in COLOURS.items():
        items.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 13}" y="{y}">{name}</text>')
        x += 25 + 6 * len(name)
    items.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="none" stroke="#000" '
                 f'stroke-width="2"/><text x="{x + 13}" y="{y}">critical chain</text>')
    return items
