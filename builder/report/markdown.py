"""A summary page's Markdown as HTML: the subset `builder.summary.page` writes, no more.

That layout has headings, fenced blocks, tab-indented lists whose items continue on lines
indented one tab deeper, and inline code, bold and two-space line breaks. Converting exactly
that keeps the HTML page the same content as the Markdown one without a Markdown library.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup, escape

_HEADING = re.compile(r"(#{1,6}) (.*)$")
_ITEM = re.compile(r"(\t*)-\t(.*)$")
_CONTINUED = re.compile(r"(\t+)(.*)$")
_INLINE = re.compile(r"`([^`]*)`|\*\*(.+?)\*\*")


def inline(text: str) -> Markup:
    """Code spans and bold, escaped; a line ending in two spaces ends in a break."""
    parts, at = [], 0
    for match in _INLINE.finditer(text):
        parts.append(escape(text[at:match.start()]))
        if match.group(1) is not None:
            parts.append(Markup("<code>%s</code>") % match.group(1))
        else:
            parts.append(Markup("<strong>%s</strong>") % match.group(2))
        at = match.end()
    rest = text[at:]
    broken = rest.endswith("  ")
    parts.append(escape(rest.rstrip(" ") if broken else rest))
    return Markup("").join(parts) + (Markup("<br>") if broken else Markup(""))


@dataclass
class _Item:
    lines: list[str]
    children: list[_Item] = field(default_factory=list)


def _list_html(items: list[_Item]) -> Markup:
    return Markup("<ul>%s</ul>") % Markup("").join(
        Markup("<li>%s%s</li>") % (Markup("\n").join(inline(line) for line in item.lines),
                                   _list_html(item.children) if item.children else "")
        for item in items)


def _read_list(lines: list[str], at: int) -> tuple[Markup, int]:
    """The list starting at `lines[at]`; returns its HTML and the index after it."""
    top: list[_Item] = []
    path: list[_Item] = []  # the last item at each depth
    while at < len(lines):
        item, continued = _ITEM.match(lines[at]), _CONTINUED.match(lines[at])
        if item:
            depth = min(len(item.group(1)), len(path))
            new = _Item([item.group(2)])
            (path[depth - 1].children if depth else top).append(new)
            path[depth:] = [new]
        elif continued and path:
            path[min(len(continued.group(1)), len(path)) - 1].lines.append(continued.group(2))
        else:
            break
        at += 1
    return _list_html(top), at


def to_html(page: str) -> Markup:
    """The page's HTML body."""
    lines, out, at = page.splitlines(), [], 0
    while at < len(lines):
        line = lines[at]
        heading = _HEADING.match(line)
        if line.startswith("```"):
            language = line[3:].strip()
            end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("```")),
                       len(lines))
            body = "\n".join(lines[at + 1:end])
            out.append(Markup('<pre><code class="language-%s">%s</code></pre>')
                       % (language, body))
            at = end + 1
        elif heading:
            level = len(heading.group(1))
            out.append(Markup("<h%d>%s</h%d>") % (level, inline(heading.group(2)), level))
            at += 1
        elif _ITEM.match(line):
            block, at = _read_list(lines, at)
            out.append(block)
        elif line.strip():
            out.append(Markup("<p>%s</p>") % inline(line))
            at += 1
        else:
            at += 1
    return Markup("\n").join(out)
