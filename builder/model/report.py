"""The JSON report a pipeline reads (`--report FILE`), and the words the stages report in.

The report holds jobs, tags, summary pages, the exit code and the retries taken per registry
host (each job and tag also counts its own); `Status` is the one enum of
stages, jobs and tags, `StageResult` what every stage's `run(options)` returns.

The document is written whole or not at all, and also when a stage stops the run, so a
pipeline always learns which stage stopped it and why.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from builder.model import retry
from builder.model.errors import InputError
from builder.model.files import write_atomic

REPORT_FORMAT = 1


class Status(str, Enum):
    """What became of a stage, a job or a tag; its value is the word the report and output use."""
    OK = "ok"  # a stage that went through
    PLANNED = "planned"  # --dry-run: would be done
    FAILED = "failed"
    BUILT = "built"  # a job
    SKIPPED = "skipped"  # a job: no engine, a parent skipped, or unchanged in the registry
    WRITTEN = "written"  # a tag's list
    UNCHANGED = "unchanged"  # a tag's list that was already there
    KEPT = "kept"  # a tag left at (or rolled back to) its previous list: its variant's write failed


class StageResult(Protocol):
    """What every stage's `run(options)` returns (generate, library, build, publish, summary)."""

    @property
    def exit_code(self) -> int: ...

    def add_to(self, report: Report) -> None:
        """Put this stage's entry (and its jobs, tags or pages) into `report`."""


@dataclass
class Report:
    command: str  # "release", "build", "publish"
    version: str
    repository: str | None = None
    registry: str | None = None
    started: float = field(default_factory=time.time)
    stages: dict[str, dict] = field(default_factory=dict)  # stage → {"status": …, …}
    jobs: list[dict] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    stopped_at: str | None = None  # the stage that failed, if one did
    running: str | None = field(default=None, repr=False)  # the stage under way; not in the document
    _since: float | None = field(default=None, repr=False)  # when `running` began

    def begin(self, name: str) -> None:
        self.running, self._since = name, time.time()

    def stage(self, name: str, status: Status, **details) -> None:
        status = Status(status)
        if name == self.running and self._since is not None:
            details["seconds"] = round(time.time() - self._since, 3)
        self.stages[name] = {"status": status.value, **details}
        if status is Status.FAILED and self.stopped_at is None:
            self.stopped_at = name

    def document(self, exit_code: int | None) -> dict:
        """The report; `exit_code` None: the run is under way (result "running")."""
        result = "running" if exit_code is None else "ok" if exit_code == 0 else "failed"
        return {"format": REPORT_FORMAT, "command": self.command, "version": self.version,
                "repository": self.repository, "registry": self.registry,
                "exit_code": exit_code, "result": result, "stopped_at": self.stopped_at,
                "started": self.started, "finished": None if exit_code is None else time.time(),
                "stages": self.stages, "jobs": self.jobs, "tags": self.tags,
                "summaries": self.summaries, "retries": retry.spent()}

    def write(self, path: str | Path | None, exit_code: int | None) -> dict:
        """The document, written to `path` when one is given. A run writes it first with
        `exit_code` None ("running"), so that a run killed midway never leaves the previous
        run's report in place for a pipeline to take as this one's."""
        document = self.document(exit_code)
        if path:
            write_atomic(Path(path), json.dumps(document, indent=2) + "\n")
        return document


def read(path: str | Path) -> object:
    """A saved JSON document (a report), parsed; InputError naming the file when it cannot be."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise InputError(f"cannot read it: {error.strerror}", source=str(path)) from None
    except ValueError as error:
        raise InputError(f"not JSON: {error}", source=str(path)) from None
