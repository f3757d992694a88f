"""`update`: move each series of versions.yaml to the newest release a python.org-layout tree
offers, verified (`builder.update.bump`), then regenerate the Dockerfiles.

Exit codes: 0 done (with --check: up to date); 1 with --check a newer release exists, else a
file that failed its check; 2 bad input; 3 partial (a version bumped, its Windows installer
not found, its windows-sha256 kept); 4 the source could not be fetched or read.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from builder.commands import generate
from builder.model.mirrors import PYTHON_ORG
from builder.model.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, BuilderError
from builder.model.files import write_atomic
from builder.model.report import Report, Status
from builder.options import DEFAULT_VERSIONS
from builder.update.bump import bump
from builder.update.index import SeriesResult


@dataclass(frozen=True)
class UpdateOptions:
    versions: str = DEFAULT_VERSIONS
    series: tuple[str, ...] = ()  # () = every series of the file
    source: str = PYTHON_ORG  # python.org's ftp/python/ or a mirror in its layout
    check: bool = False  # write nothing; exit 1 when a newer release exists
    dry_run: bool = False  # print the diff; write nothing
    report: str | None = None


@dataclass(frozen=True)
class UpdateResult:
    series: tuple[SeriesResult, ...]
    check: bool = False
    diff: str = ""
    files: tuple[str, ...] = ()  # the Dockerfiles rewritten (or, dry run, to be)

    @property
    def exit_code(self) -> int:
        if self.check:
            return EXIT_FAILED if any(s.new for s in self.series) else EXIT_OK
        return EXIT_PARTIAL if any(s.windows_kept for s in self.series) else EXIT_OK

    def add_to(self, report: Report) -> None:
        series = [asdict(s) for s in self.series]
        newer = [f"{s.series} {s.old} → {s.new}" for s in self.series if s.new]
        if self.check and newer:
            report.stage("update", Status.FAILED, series=series,
                         reason=f"a newer release exists: {', '.join(newer)}")
        else:
            report.stage("update", Status.OK, series=series, files=list(self.files))


def run(options: UpdateOptions, out: TextIO) -> UpdateResult:
    """Bump, regenerate, write the report (also when an error stops the bump: a scheduled
    pipeline reads why, as well as the exit code)."""
    try:
        bumped = bump(Path(options.versions), options.series, options.source, out,
                      check=options.check, dry_run=options.dry_run)
        files = bumped.stale
        if bumped.rewritten:
            generated = generate.run(generate.GenerateOptions(options.versions), out)
            files = tuple(str(path) for path in generated.written)
        result = UpdateResult(bumped.series, options.check, bumped.diff, files)
    except BuilderError as error:
        if options.report:
            _write_report(options, error.exit_code, [], [], error=str(error))
        raise
    if options.report:
        _write_report(options, result.exit_code, result.series, result.files)
        print(f"report: {options.report}", file=out)
    return result


def _write_report(options: UpdateOptions, exit_code: int, series, files,
                  error: str | None = None) -> None:
    write_atomic(Path(options.report), json.dumps({
        "versions": options.versions, "source": options.source, "check": options.check,
        "dry_run": options.dry_run, "exit_code": exit_code, "error": error,
        "series": [asdict(s) for s in series], "files": list(files),
    }, indent=2) + "\n")
