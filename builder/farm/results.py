"""What the build stage's jobs came to: values, made once per job from what its attempt returned.

A job's attempt (`builder.farm.runner`) returns an `Attempt`: how it ended, the job as prepared,
its last `EngineRun` and the failovers before it; `job_result` is the one place those values
become the job's `JobResult`. `BuildRun` is the whole run, as the build command reports it.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from builder.attest.image import without_sbom
from builder.farm.pools import Health
from builder.farm.progress import table
from builder.model.mirrors import Mirror
from builder.model.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BuilderError
from builder.model.report import Report, Status
from builder.model.smoke import Outcome
from builder.plan import listing
from builder.plan.identity import Prepared
from builder.plan.plan import BuildJob, Plan

SHORT_DIGEST = 12  # hex digits of a digest the table shows
# The board and the table time a job alike, and say so.
CLOCK = "time: since the job took its engine slot (its last, after a failover), as on the board"

if TYPE_CHECKING:  # the engine API loads the Docker SDK; a result only holds its value
    from builder.farm.engineapi import PushedImage


@dataclass(frozen=True)
class Failover:
    """A job's engine went away under it; the job was built again from the start elsewhere."""
    engine: str  # the engine it was on
    cause: str
    at: float  # epoch seconds

    def as_dict(self) -> dict:
        return {"engine": self.engine, "cause": self.cause, "at": self.at}


@dataclass(frozen=True)
class Phase:
    """A phase of a job on one engine (pull, build, smoke test, push) as it ran; one that an
    error or a lost engine cut short is there too, up to that moment."""
    name: str
    engine: str
    started: float  # epoch seconds
    finished: float

    def as_dict(self) -> dict:
        return {"phase": self.name, "engine": self.engine, "started": self.started,
                "finished": self.finished}


@dataclass(frozen=True)
class EngineRun:
    """A job's go on one engine, as far as it got; `error` is what stopped it (None: it built,
    was tested and, when the run pushes, pushed)."""
    engine: str
    started: float  # epoch seconds: the engine slot was taken
    image_id: str | None = None
    checks: tuple[Outcome, ...] = ()  # the smoke tests, as they ran
    built: float | None = None  # epoch seconds: the build (and its smoke tests) ended
    pushed: PushedImage | None = None
    finished: float | None = None
    error: Exception | None = None
    phases: tuple[Phase, ...] = ()  # as far as it got
    emulated: bool = False  # the engine builds the job's platform under emulation (QEMU)
    compressed: int | None = None  # the pushed image's layers in the registry (bytes)
    builder: str | None = None  # classic or buildkit
    attestation: dict | None = None  # its attestation manifest's index descriptor, pushed


@dataclass(frozen=True)
class Attempt:
    """What a job's attempt came to: the values its `JobResult` is made of."""
    status: Status  # BUILT, SKIPPED (unchanged, or unserved) or FAILED
    reason: str = ""  # why skipped
    prepared: Prepared | None = None  # None: it failed or was skipped before that
    run: EngineRun | None = None  # on the last engine it took
    failovers: tuple[Failover, ...] = ()
    earlier: tuple[Phase, ...] = ()  # its phases on the engines it failed over from
    digest: str | None = None  # skipped unchanged: the registry's digest
    compressed: int | None = None  # skipped unchanged: the registry's image's layers (bytes)
    unserved: bool = False  # skipped at run time: no healthy engine in its pool
    error: Exception | None = None  # why it failed


@dataclass(frozen=True)
class JobResult:
    key: str
    platform: str  # official name: arm32v7
    engine: str | None  # the engine that built it (the last one tried, if it failed)
    status: Status  # BUILT, SKIPPED or FAILED
    reason: str = ""  # why skipped or failed
    image: str | None = None  # the per-arch reference
    image_id: str | None = None
    build_hash: str | None = None
    digest: str | None = None  # in the registry: pushed now, or found unchanged
    pushed: PushedImage | None = None
    started: float | None = None  # epoch seconds: the engine slot was taken
    finished: float | None = None
    built: float | None = None  # epoch seconds: the build (and its smoke tests) ended
    log: Path | None = None
    checks: list[Outcome] = field(default_factory=list)  # the smoke tests, as they ran
    mirrors: tuple[Mirror, ...] = ()  # the mirrors its Dockerfile fetched from
    failovers: list[Failover] = field(default_factory=list)
    unserved: bool = False  # skipped at run time: no healthy engine in its pool (exit 1)
    retries: int = 0  # transient registry failures its pulls, push and lookups got past
    phases: tuple[Phase, ...] = ()  # on every engine it was tried on
    emulated: bool = False  # its (last) engine built it under emulation (QEMU)
    compressed: int | None = None  # its image's layers in the registry, compressed (bytes)
    builder: str | None = None  # how its (last) engine built it: classic or buildkit
    attestation: dict | None = None  # its attestation manifest's index descriptor, pushed now
    no_sbom: str | None = None  # attested without an SBOM (Windows): why

    @property
    def outcome(self) -> str:
        """The table's word for it: built, unchanged (the registry holds it: not built again),
        no engine (none of its pool could build it) or failed."""
        if self.status is not Status.SKIPPED:
            return self.status.value
        return "unchanged" if self.digest else "no engine"

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def as_dict(self) -> dict:
        """For the release report (JSON)."""
        return {"job": self.key, "platform": self.platform, "engine": self.engine,
                "status": self.status.value, "reason": self.reason, "image": self.image,
                "image_id": self.image_id, "build_hash": self.build_hash,
                "digest": self.digest, "size": self.pushed.size if self.pushed else None,
                "pushed": [str(self.pushed.reference)] if self.pushed else [],
                "started": self.started, "built": self.built, "finished": self.finished,
                "checks": [c.as_dict() for c in self.checks],
                "mirrors": [{"name": m.name, "upstream": m.upstream, "url": m.url}
                            for m in self.mirrors],
                "failovers": [f.as_dict() for f in self.failovers],
                "retries": self.retries, "emulated": self.emulated, "builder": self.builder,
                "compressed": self.compressed, "attestation": self.attestation,
                "no_sbom": self.no_sbom,
                "phases": [p.as_dict() for p in self.phases],
                "log": str(self.log) if self.log else None}


def job_result(job: BuildJob, log: Path, attempt: Attempt, *, retries: int, interrupted: bool,
               now: float) -> JobResult:
    """The one place a job's result is made: from its attempt, the retries it took, whether
    the run was interrupted meanwhile, and the time it ended (`now`, unless its build ended)."""
    run, prepared = attempt.run, attempt.prepared
    pushed = run.pushed if run else None
    reason = _failure(job.key, attempt, interrupted) if attempt.status is Status.FAILED \
        else attempt.reason
    return JobResult(
        job.key, job.platform.name, run.engine if run else None, attempt.status, reason,
        image=str(job.image), image_id=run.image_id if run else None,
        build_hash=prepared.build_hash if prepared else None,
        digest=pushed.digest if pushed else attempt.digest, pushed=pushed,
        started=run.started if run else None, finished=(run.finished if run else None) or now,
        built=run.built if run else None, log=log, checks=list(run.checks) if run else [],
        mirrors=prepared.mirrors if prepared else (), failovers=list(attempt.failovers),
        unserved=attempt.unserved, retries=retries,
        phases=attempt.earlier + (run.phases if run else ()), emulated=bool(run and run.emulated),
        compressed=run.compressed if run else attempt.compressed,
        builder=run.builder if run else None,
        attestation=run.attestation if run else None,
        no_sbom=without_sbom(job.platform.os) if run and run.attestation else None)


def _failure(key: str, attempt: Attempt, interrupted: bool) -> str:
    """Why the job failed, with its key: the one place a failure gets it (the raise sites
    leave it out)."""
    error = attempt.error
    if not isinstance(error, BuilderError):  # a bug fails its job, saying what it was
        return f"{key}: {type(error).__name__}: {error}"
    reason = str(error)
    if interrupted and not reason.startswith("interrupted"):
        reason = f"interrupted: {reason}"
    if attempt.failovers:
        reason += f" (on {attempt.run.engine}, after engine {attempt.failovers[0].engine} " \
                  "went away)"
    return f"{key}: {reason}"


@dataclass
class BuildRun:
    plan: Plan
    results: list[JobResult]
    interrupted: bool = False  # Ctrl-C: jobs that had not finished are failed "interrupted"
    planned: bool = False  # --dry-run: the plan only, nothing ran
    health: Health = field(default_factory=Health)  # what the probes before the run found
    native: frozenset[str] = frozenset()  # --dry-run: this machine's architectures, for its jobs

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if r.status is Status.FAILED]

    @property
    def unserved(self) -> list[JobResult]:
        """Jobs skipped because no engine of their pool was healthy: not built, not done."""
        return [r for r in self.results if r.unserved]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failures or self.unserved else EXIT_OK

    def add_to(self, report: Report) -> None:
        """The build stage's entry and every job's result."""
        if self.planned:
            report.jobs = listing.planned_jobs(self.plan, self.native)
            report.stage("build", Status.PLANNED, jobs=len(self.plan.jobs),
                         skipped=len(self.plan.skipped))
            return
        report.jobs = [r.as_dict() for r in self.results]
        counts = Counter(r.status.value for r in self.results)
        # Only what happened: a run of healthy engines and no failover reads as before pools.
        details = {}
        if self.health.lines():
            details["engines"] = self.health.as_dict()
        failovers = sum(len(r.failovers) for r in self.results)
        if failovers:
            details["failovers"] = failovers
        if self.unserved:
            details["unserved"] = [u.key for u in self.unserved]
        if self.failures or self.unserved or self.interrupted:
            counts.pop(Status.FAILED.value, None)
            reasons = ([f"{len(self.failures)} job(s) failed"] if self.failures else []) + \
                ([f"{len(self.unserved)} job(s) skipped: no healthy engine"]
                 if self.unserved else [])
            report.stage("build", Status.FAILED, **counts, **details,
                         failed=[f.key for f in self.failures],
                         reason="interrupted" if self.interrupted else "; ".join(reasons))
        else:
            report.stage("build", Status.OK, **counts, **details)

    def table(self) -> str:
        """The end-of-run table, what its times measure, then a line for every failover. A
        digest is its first hex digits, as `docker images` shows an id, so the table fits 100
        columns; the report has them whole."""
        rows = table([(r.key, r.engine or "-", r.outcome,
                       r.digest.partition(":")[2][:SHORT_DIGEST] if r.digest else "-",
                       f"{r.seconds:.1f}s" if r.seconds is not None else "-")
                      for r in self.results])
        moved = [f"failover: {r.key}: {f.cause}; built again from the start on {r.engine}: "
                 f"{r.status.value}" for r in self.results for f in r.failovers]
        return "\n".join([rows, CLOCK, *moved])


def grouped(results: Sequence[JobResult], word: str, *, logs: bool) -> list[str]:
    """One line per distinct reason among `results`, in the order first met, so one cause of
    many jobs (a registry out of reach) is said once: `word: KEY: reason (log: …)` for a job
    alone, `word: N jobs (KEYS): reason (logs under DIR)` for jobs that failed alike."""
    alike: dict[str, list[JobResult]] = {}
    for result in results:
        alike.setdefault(result.reason.removeprefix(f"{result.key}: "), []).append(result)
    lines = []
    for reason, jobs in alike.items():
        found = [str(job.log) for job in jobs if job.log] if logs else []
        if len(jobs) == 1:
            lines.append(f"{word}: {jobs[0].key}: {reason}"
                         + (f" (log: {found[0]})" if found else ""))
            continue
        where = f" (logs under {os.path.commonpath(found)})" if found else ""
        lines.append(f"{word}: {len(jobs)} jobs ({compact_keys([j.key for j in jobs])}): "
                     f"{reason}{where}")
    return lines


def compact_keys(keys: Sequence[str]) -> str:
    """Job keys the way a reader scans them: `1.0.0/busybox/{amd64,i386}, 1.0.0/slim/amd64`
    (the keys of one version and variant together, in their order)."""
    platforms: dict[str, list[str]] = {}
    for key in keys:
        stem, _, platform = key.rpartition("/")
        platforms.setdefault(stem, []).append(platform)
    return ", ".join(f"{stem}/{names[0]}" if len(names) == 1 else f"{stem}/{{{','.join(names)}}}"
                     for stem, names in platforms.items())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a build; `run` is what became of each job, for the report."""

    def __init__(self, run: BuildRun) -> None:
        super().__init__("interrupted")
        self.run = run
