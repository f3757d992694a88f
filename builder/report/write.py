"""The HTML report's edge: a report document → `<out>/<repository>/index.html` and a page per tag
(`<out>/<repository>/tags/<tag>.html`).

Every release, build and publish writes its page at the end of its run (`save`); `invoke
report REPORT.json --html DIR` writes it again from a saved report (`run`). The summary pages'
Markdown is read from where the report says the summary stage wrote it; a page that is no
longer there is left out, and its tag's row has no link.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, TextIO
from urllib.parse import quote

from builder.model.errors import EXIT_OK, InputError
from builder.model.files import write_atomic
from builder.model.report import REPORT_FORMAT, Report, Status, read
from builder.options import DEFAULT_PAGES
from builder.report import html


def directory(document: Mapping, out: str | Path) -> Path:
    """`<out>/<repository>`, where the summary pages go too."""
    return Path(out) / document["repository"]


def write(document: Mapping, out: str | Path) -> Path | None:
    """Write the site of `document` under `<out>/<repository>/`; returns the index's path, or
    None when the run stopped before it knew its repository (it has nothing to show)."""
    if not document.get("repository"):
        return None
    base = directory(document, out)
    pages = {}
    for summary in document["summaries"]:
        try:
            pages[summary["tag"]] = Path(summary["path"]).read_text()
        except OSError:
            continue  # moved or deleted since: the row goes without its link
    logs = {job["job"]: _href(Path(job["log"]), base) for job in document["jobs"]
            if job.get("log")}
    for relative, text in html.render(document, pages, logs).items():
        write_atomic(base / relative, text)
    return base / html.INDEX


def _href(path: Path, base: Path) -> str:
    """`path` relative to the page's directory, so the link works wherever the tree is
    opened or copied to, with file:// as with a web server."""
    return quote(Path(os.path.relpath(path.resolve(), base.resolve())).as_posix())


def save(report: Report, exit_code: int, *, json_path: str | None, html_dir: str | None) -> None:
    """The end of a run: its JSON report at `json_path` and its page under `html_dir`, each
    when given."""
    document = report.write(json_path, exit_code)
    if html_dir:
        write(document, html_dir)


@dataclass(frozen=True)
class ReportOptions:
    """`invoke report`'s options."""
    report: str  # a saved JSON report (--report FILE of a release, build or publish)
    html: str = DEFAULT_PAGES  # the page goes to <html>/<repository>/index.html


@dataclass(frozen=True)
class ReportResult:
    index: Path
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        report.stage("report", Status.OK, index=str(self.index))


def run(options: ReportOptions, out: TextIO | None = None) -> ReportResult:
    """`invoke report`: the page of a saved report, written again; its path on `out`."""
    document = read(options.report)
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise InputError(f"not a report of this tool (format {REPORT_FORMAT}): write one with "
                         "--report FILE on release, build or publish", source=options.report)
    index = write(document, options.html)
    if index is None:
        raise InputError("the run stopped before it knew its repository: there is nothing to "
                         "show", source=options.report)
    print(index, file=out or sys.stdout)
    return ReportResult(index)
