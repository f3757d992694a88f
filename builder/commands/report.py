"""`invoke report REPORT.json --html DIR`: the HTML report of a saved JSON report, written again.

The page itself is `builder.report`'s (the pure renderer and the edge that writes it); this
reads the report, checks it is one of this tool's, and says where the page went.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.model.errors import EXIT_OK, InputError
from builder.model.report import REPORT_FORMAT, Report, Status, read
from builder.options import DEFAULT_PAGES
from builder.report.write import write


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


def run(options: ReportOptions, out: TextIO) -> ReportResult:
    """`invoke report`: the page of a saved report, written again; its path on `out`."""
    document = read(options.report)
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise InputError(f"not a report of this tool (format {REPORT_FORMAT}): write one with "
                         "--report FILE on release, build or publish", source=options.report)
    index = write(document, options.html)
    if index is None:
        raise InputError("the run stopped before it knew its repository: there is nothing to "
                         "show", source=options.report)
    print(index, file=out)
    return ReportResult(index)
