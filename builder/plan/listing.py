"""A plan as a pipeline reads it: every job as a value (JSON), a CI matrix, the emulation warning.

Pure: a `Plan` and the architectures this machine runs natively in; documents and lines out.
`plan --format json`, `plan --format github-matrix`, `build --dry-run` (its warning and its
`--report`) all show a plan through here, so a matrix entry and the report name a job alike.

Emulation. A job is emulated when no engine of its pool runs its architecture natively: a local
(unix://) engine runs this machine's architectures; a remote engine's kernel cannot be seen from
here, so the platforms its builders-file entry lists are taken as its own. The estimate is a
job's native time, `NATIVE_MINUTES`, times its platform's factor under QEMU, from the one table
`EMULATION_FACTOR`: a guide to how a run spreads over runners, not a promise.
"""
from __future__ import annotations

from dataclasses import dataclass

from builder.model.platforms import Platform
from builder.plan.plan import BuildJob, Plan

# One CPython build with its tests on one native core, in minutes: what the factors multiply.
NATIVE_MINUTES = 10
# How many times longer a job takes under QEMU user-mode emulation than natively, per platform:
# measured orders of magnitude (a CPython build and its test suite), not a benchmark.
EMULATION_FACTOR = {
    "amd64": 4, "i386": 4, "arm32v5": 10, "arm32v6": 10, "arm32v7": 8, "arm64v8": 6,
    "mips64le": 12, "ppc64le": 10, "riscv64": 14, "s390x": 12, "windows-amd64": 1,
}
MATRIX_PER = ("job", "platform")  # what one entry of a CI matrix stands for


@dataclass(frozen=True)
class Listed:
    """A job of the plan as a pipeline sees it."""
    job: BuildJob
    emulated: bool

    @property
    def minutes(self) -> int:
        factor = EMULATION_FACTOR.get(self.job.platform.name, 1) if self.emulated else 1
        return NATIVE_MINUTES * factor

    def as_dict(self) -> dict:
        job = self.job
        return {"job": job.key, "version": job.version.full, "variant": job.variant.name,
                "platform": job.platform.name, "oci_platform": job.platform.oci,
                "pool": list(job.pool), "image": str(job.image), "tags": list(job.tags),
                "parent": job.parent, "emulated": self.emulated,
                "estimate_minutes": self.minutes}


def listed(plan: Plan, host: frozenset[str]) -> list[Listed]:
    """Every job of `plan`, with whether it runs under emulation; `host`: the OCI architectures
    this machine runs natively (what a local engine builds without QEMU)."""
    engines = {engine.name: engine for engine in plan.builders.engines}

    def native(name: str, target: Platform) -> bool:
        engine = engines[name]
        if engine.url.startswith("unix://"):
            return target.os != "linux" or target.architecture in host
        return True  # its listed platforms are its own: a remote kernel is not seen from here

    return [Listed(job, not any(native(name, job.platform) for name in job.pool))
            for job in plan.jobs]


def fanned_out(plan: Plan, host: frozenset[str]) -> list[Listed]:
    """The jobs a CI matrix spreads over runners: the plan's, and the selected ones no engine
    here serves (each runner builds on its own engine, so the planning machine's engines do not
    decide what a runner builds; those are not known to be emulated)."""
    members = {job.key: job for job in plan.members}
    return listed(plan, host) + [Listed(members[s.key], False) for s in plan.skipped]


def host_architectures(machine: str) -> frozenset[str]:
    """The OCI architectures a kernel of `machine` (an OCI architecture) runs without QEMU:
    itself, and i386 beside amd64 (the kernel's IA32 compat)."""
    return frozenset({machine, "386"} if machine == "amd64" else {machine})


def document(plan: Plan, host: frozenset[str]) -> dict:
    """`plan --format json`: the plan's jobs and skipped jobs, and its totals."""
    jobs = listed(plan, host)
    return {"repository": plan.family.repository, "version": plan.version.full,
            "registry": plan.registry, "jobs": [entry.as_dict() for entry in jobs],
            "skipped": [{"job": s.key, "platform": s.platform.name, "reason": s.reason}
                        for s in plan.skipped],
            "emulated": sum(entry.emulated for entry in jobs),
            "estimate_minutes": sum(entry.minutes for entry in jobs)}


def planned_jobs(plan: Plan, host: frozenset[str]) -> list[dict]:
    """The report's jobs of a plan that did not run (`plan`, `build --dry-run`)."""
    return [dict(entry.as_dict(), status="planned") for entry in listed(plan, host)]


def matrix(plan: Plan, host: frozenset[str], per: str = "job") -> dict:
    """`plan --format github-matrix`: an `include:` list, one entry per job, or per platform
    (its jobs run by one `build --platform P`, the fan-out's unit)."""
    jobs = fanned_out(plan, host)
    if per == "job":
        return {"include": [{key: entry.as_dict()[key] for key in
                             ("job", "version", "variant", "platform", "emulated",
                              "estimate_minutes")} for entry in jobs]}
    platforms: dict[str, list[Listed]] = {}
    for entry in jobs:
        platforms.setdefault(entry.job.platform.name, []).append(entry)
    return {"include": [{"platform": name, "version": plan.version.full, "jobs": len(entries),
                         "emulated": any(e.emulated for e in entries),
                         "estimate_minutes": sum(e.minutes for e in entries)}
                        for name, entries in platforms.items()]}


def emulation_warning(plan: Plan, host: frozenset[str]) -> str | None:
    """One line when jobs would run under emulation: how many, which platforms, how long."""
    emulated = [entry for entry in listed(plan, host) if entry.emulated]
    if not emulated:
        return None
    platforms = ", ".join(dict.fromkeys(entry.job.platform.name for entry in emulated))
    hours = sum(entry.minutes for entry in emulated) / 60
    return (f"warning: {len(emulated)} of {len(plan.jobs)} jobs run under emulation (QEMU): "
            f"{platforms}; about {hours:.1f} h of build time by the per-platform factors "
            f"(a job natively ~{NATIVE_MINUTES} min); give those platforms native engines in "
            "a builders file, or fan the platforms out over CI runners (docs/ci/)")
