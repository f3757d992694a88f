"""The HTML report's pure renderer: a report document and its tags' summary pages in, the
files of a static site out.

`<repository>/index.html` holds the run's verdict, a tag × platform matrix, a timeline of the
engines (a bar per job and engine, split into its phases) and the jobs with their logs;
`<repository>/tags/<tag>.html` holds each tag's summary page, converted from the very
Markdown the summary stage wrote. The pages are self-contained: the style is inlined and there
is no script and no fetch, so they open from file:// offline. `builder.report.write` is the
edge that reads the pages and writes the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

import jinja2

from builder.model.platforms import PLATFORMS
from builder.report.markdown import to_html
from builder.summary.page import size_short

INDEX = "index.html"
PHASES = ("pull", "build", "smoke test", "push")
# A status as a symbol too, so a cell reads without its colour.
SYMBOLS = {"built": "✓", "unchanged": "=", "failed": "✗", "no engine": "∅", "not built": "–",
           "listed": "•", "not in this run": "·"}
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("builder.report", "templates"),
                                autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                undefined=jinja2.StrictUndefined)


def tag_page(tag: str) -> str:
    """Where a tag's page is, relative to the index: in tags/, as remote/ holds only what
    repo-info's layout has. A tag is [A-Za-z0-9_.-] only, so the path is its own href."""
    return f"tags/{tag}.html"


@dataclass(frozen=True)
class Cell:
    """One job of a tag on one platform."""
    job: str
    status: str  # a key of SYMBOLS
    digest: str = ""  # the short form; `full_digest` for the title
    full_digest: str = ""
    size: str = ""
    seconds: str = ""
    emulated: bool = False
    reason: str = ""
    log: str | None = None

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.status]

    @property
    def css(self) -> str:
        return self.status.replace(" ", "-")


@dataclass(frozen=True)
class Row:
    """A tag (or, in a build's report, a variant) across the platforms."""
    name: str
    status: str  # the tag's: written, unchanged, failed, planned; "" for a variant
    digest: str
    reason: str
    page: str | None  # the tag page's href
    cells: Mapping[str, tuple[Cell, ...]]  # platform → its members (Windows may have several)


@dataclass(frozen=True)
class Segment:
    phase: str
    left: float  # percent of the bar
    width: float
    seconds: str


@dataclass(frozen=True)
class Bar:
    """A job's time on one engine; a job that failed over has one on each engine it was tried on."""
    job: str
    status: str  # the job's, or "failover" on the engine that went away
    left: float  # percent of the timeline
    width: float
    segments: tuple[Segment, ...]
    title: str
    emulated: bool = False
    retries: int = 0
    log: str | None = None


@dataclass(frozen=True)
class Lane:
    """An engine's bars, in as many rows as it ran jobs at once."""
    engine: str
    rows: tuple[tuple[Bar, ...], ...]


def _rows(bars: Sequence[Bar]) -> tuple[tuple[Bar, ...], ...]:
    """Each bar (in order of start) in the first row where it overlaps no other."""
    rows: list[list[Bar]] = []
    for bar in bars:
        row = next((row for row in rows if row[-1].left + row[-1].width <= bar.left + 1e-9),
                   None)
        if row is None:
            rows.append(row := [])
        row.append(bar)
    return tuple(tuple(row) for row in rows)


def short_digest(digest: str | None) -> str:
    """The first 12 hex digits, as `docker images` shows an id."""
    return (digest or "").removeprefix("sha256:")[:12]


def duration(seconds: float | None) -> str:
    """`0.4s`, `12.3s`, `4m05s`, `1h02m`."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def moment(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def job_status(job: Mapping) -> str:
    """built, unchanged (skipped: the registry holds it), failed, no engine, not built."""
    if job["status"] in ("built", "failed"):
        return job["status"]
    if job.get("digest"):
        return "unchanged"
    return "no engine" if "engine" in (job.get("reason") or "") else "not built"


def _seconds(job: Mapping) -> float | None:
    if job.get("started") is None or job.get("finished") is None:
        return None
    return job["finished"] - job["started"]


def _cell(job: Mapping, logs: Mapping[str, str]) -> Cell:
    return Cell(job["job"], job_status(job), short_digest(job.get("digest")),
                job.get("digest") or "",
                size_short(job["compressed"]) if job.get("compressed") is not None else "",
                duration(_seconds(job)), bool(job.get("emulated")), job.get("reason") or "",
                logs.get(job["job"]))


def platforms(document: Mapping) -> list[str]:
    """Every platform of a job or tag member, in the platform table's order."""
    names = {job["job"].rsplit("/", 1)[1] for job in document["jobs"]}
    names |= {key.rsplit("/", 1)[1] for tag in document["tags"] for key in tag.get("members", ())}
    order = list(PLATFORMS)
    return sorted(names, key=lambda name: (order.index(name) if name in order else len(order),
                                           name))


def matrix(document: Mapping, pages: Mapping[str, str], logs: Mapping[str, str]) -> list[Row]:
    """A row per tag, each cell its member's job; a build's report (no tags): a row per variant."""
    jobs = {job["job"]: job for job in document["jobs"]}
    rows = []
    for tag in document["tags"]:
        cells: dict[str, list[Cell]] = {}
        # A member this run did not build is "listed" only when the written list holds its
        # platform: a run limited by --platform leaves the variant's other members out.
        listed = {label.split()[0] for label in tag.get("platforms", ())}
        for key in tag.get("members", ()):
            platform = PLATFORMS.get(key.rsplit("/", 1)[1])
            cell = _cell(jobs[key], logs) if key in jobs else Cell(
                key, "listed" if tag["status"] != "failed" and platform is not None
                and platform.oci in listed else "not in this run")
            cells.setdefault(key.rsplit("/", 1)[1], []).append(cell)
        rows.append(Row(tag["tag"], tag["status"], short_digest(tag.get("digest")),
                        tag.get("reason") or "", tag_page(tag["tag"]) if tag["tag"] in pages
                        else None, {name: tuple(found) for name, found in cells.items()}))
    if rows:
        return rows
    variants: dict[str, dict[str, list[Cell]]] = {}
    for key, job in jobs.items():
        variant, platform = key.rsplit("/", 1)
        variants.setdefault(variant, {}).setdefault(platform, []).append(_cell(job, logs))
    return [Row(name, "", "", "", None, {p: tuple(c) for p, c in cells.items()})
            for name, cells in variants.items()]


@dataclass(frozen=True)
class _Attempt:
    engine: str
    started: float
    finished: float
    phases: tuple[Mapping, ...]
    lost: str | None  # why the engine went away under it


def _attempts(job: Mapping) -> list[_Attempt]:
    """The job's runs on each engine, in order: its phases grouped by engine, the last run
    from the slot taken to the job's end (a push slot waited for included)."""
    groups: list[list[Mapping]] = []
    for phase in job.get("phases") or ():
        if not groups or groups[-1][0]["engine"] != phase["engine"]:
            groups.append([])
        groups[-1].append(phase)
    if not groups:
        if job.get("engine") is None or _seconds(job) is None:
            return []
        return [_Attempt(job["engine"], job["started"], job["finished"], (), None)]
    lost = {f["engine"]: f for f in job.get("failovers") or ()}
    found = []
    for index, phases in enumerate(groups):
        last = index == len(groups) - 1
        failover = None if last else lost.get(phases[0]["engine"])
        started = job["started"] if last and job.get("started") else phases[0]["started"]
        finished = job["finished"] if last and job.get("finished") else phases[-1]["finished"]
        if failover:
            finished = max(finished, failover["at"])
        found.append(_Attempt(phases[0]["engine"], started, finished, tuple(phases),
                              failover["cause"] if failover else None))
    return found


def _bar(job: Mapping, attempt: _Attempt, start: float, span: float,
         logs: Mapping[str, str]) -> Bar:
    length = max(attempt.finished - attempt.started, 1e-6)
    segments = tuple(Segment(p["phase"], 100 * (p["started"] - attempt.started) / length,
                             100 * (p["finished"] - p["started"]) / length,
                             duration(p["finished"] - p["started"])) for p in attempt.phases)
    status = "failover" if attempt.lost else job_status(job)
    said = [f"{job['job']} on {attempt.engine}: {status}, {duration(length)}"]
    said += [f"{s.phase} {s.seconds}" for s in segments]
    if job.get("emulated") and not attempt.lost:
        said.append("emulated (QEMU)")
    if job.get("retries"):
        said.append(f"{job['retries']} registry retries")
    if attempt.lost:
        said.append(f"engine went away: {attempt.lost}")
    elif job.get("reason") and status == "failed":
        said.append(job["reason"])
    return Bar(job["job"], status, 100 * (attempt.started - start) / span,
               max(100 * length / span, 0.4), segments, "; ".join(said),
               bool(job.get("emulated")) and not attempt.lost, int(job.get("retries") or 0),
               logs.get(job["job"]))


@dataclass(frozen=True)
class Timeline:
    lanes: tuple[Lane, ...]
    seconds: float  # from the first job's start to the last one's end
    ticks: tuple[tuple[float, str], ...]  # (percent, label)


def timeline(jobs: Sequence[Mapping], logs: Mapping[str, str]) -> Timeline:
    """A lane per engine, in the order the engines first took a job."""
    runs = [(job, attempt) for job in jobs for attempt in _attempts(job)]
    if not runs:
        return Timeline((), 0.0, ())
    start = min(a.started for _, a in runs)
    span = max(max(a.finished for _, a in runs) - start, 1e-6)
    lanes: dict[str, list[Bar]] = {}
    for job, attempt in sorted(runs, key=lambda run: run[1].started):
        lanes.setdefault(attempt.engine, []).append(_bar(job, attempt, start, span, logs))
    ticks = tuple((100 * i / 4, duration(span * i / 4)) for i in range(5))
    return Timeline(tuple(Lane(name, _rows(bars)) for name, bars in lanes.items()), span, ticks)


def _verdict(document: Mapping) -> str:
    if document["result"] == "ok":
        return "ok"
    stopped = document.get("stopped_at")
    return f"failed at stage {stopped}" if stopped else "failed"


def _mirrors(jobs: Sequence[Mapping]) -> list[Mapping]:
    seen: dict[str, Mapping] = {}
    for job in jobs:
        for mirror in job.get("mirrors") or ():
            seen.setdefault(mirror["url"], mirror)
    return list(seen.values())


def _engines(document: Mapping) -> list[tuple[str, str]]:
    """(engine, what it did or why it was left out), for the run's facts."""
    done: dict[str, list[str]] = {}
    for job in document["jobs"]:
        for attempt in _attempts(job):
            done.setdefault(attempt.engine, []).append(job["job"])
    emulated = {job["engine"] for job in document["jobs"] if job.get("emulated")}
    facts = [(name, f"{len(keys)} job(s)" + (", some under emulation (QEMU)"
                                               if name in emulated else ""))
             for name, keys in done.items()]
    health = (document["stages"].get("build") or {}).get("engines") or {}
    facts += [(name, f"left out: {why}") for name, why in (health.get("left_out") or {}).items()]
    facts += [(e["engine"], f"not used for {e['platform']}: {e['reason']}")
              for e in health.get("not_used_for") or ()]
    return facts


def index(document: Mapping, pages: Mapping[str, str], logs: Mapping[str, str]) -> str:
    """The index page. `pages`: tag → its summary page's Markdown; `logs`: job → its log's href."""
    return _TEMPLATES.get_template("index.html.j2").render(
        report=document, verdict=_verdict(document), platforms=platforms(document),
        rows=matrix(document, pages, logs), timeline=timeline(document["jobs"], logs),
        mirrors=_mirrors(document["jobs"]), engines=_engines(document), logs=logs,
        phases=PHASES, symbols=SYMBOLS, job_status=job_status, duration=duration,
        moment=moment, short_digest=short_digest,
        seconds=(document["finished"] - document["started"]
                 if document.get("finished") else None))


def render(document: Mapping, pages: Mapping[str, str], logs: Mapping[str, str]
           ) -> dict[str, str]:
    """The site's files: {path relative to <out>/<repository>/: HTML}."""
    title = f"{document.get('repository') or ''} {document['version']}".strip()
    files = {INDEX: index(document, pages, logs)}
    page = _TEMPLATES.get_template("tag.html.j2")
    for tag, text in pages.items():
        files[tag_page(tag)] = page.render(title=title, tag=tag, body=to_html(text),
                                           back="../" + INDEX)
    return files
