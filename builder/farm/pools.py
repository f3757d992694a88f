"""Engine pools: which engines may build a platform, which of them are healthy, and which takes a job.

Pure: facts in (what each engine says it runs, how busy each one is), decisions out. The probes
that gather the facts are `builder.farm.health`; the Runner of `builder.farm.runner` asks `choose` each
time a job is ready, so assignment follows the load at run time, not a split fixed in advance.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from builder.farm.builders import Engine
from builder.model.errors import InputError
from builder.model.platforms import Platform, from_oci, os_version_in_line

_WINDOWS_VERSION = re.compile(r"(\d+)\.(\d+)[. ](\d+)")  # "10.0.17763…" or "10.0 17763 (…)"


@dataclass(frozen=True)
class Facts:
    """What an engine reports it runs (`docker version` / `docker info`)."""
    os: str  # OCI os: linux, windows
    architecture: str  # OCI architecture, normalized: amd64, arm64, 386
    os_version: str | None = None  # Windows: 10.0.17763 (the build line, maybe with its revision)

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f" {self.os_version}" if self.os_version else "")

    @classmethod
    def from_answers(cls, version: Mapping, info: Mapping) -> Facts:
        """From the engine's `version` and `info` answers (Windows: os.version from either
        OSVersion or the kernel version, "10.0 17763 (17763.1.amd64fre…)")."""
        os = version.get("Os") or info.get("OSType") or ""
        architecture = version.get("Arch") or info.get("Architecture") or ""
        try:
            architecture = from_oci(os, architecture).architecture
        except InputError:
            pass  # outside our table: it matches none of the listed platforms, as it should
        os_version = None
        if os == "windows":
            found = (_WINDOWS_VERSION.match(info.get("OSVersion") or "")
                     or _WINDOWS_VERSION.match(info.get("KernelVersion") or ""))
            os_version = ".".join(found.groups()) if found else None
        return cls(os, architecture, os_version)


def judge(engine: Engine, facts: Facts) -> tuple[dict[str, str], tuple[Platform, ...]]:
    """Each platform `engine` lists against what it runs: (platform name → why it cannot build
    it, the listed platforms it can build only by emulation, which a container must prove)."""
    refused: dict[str, str] = {}
    foreign = []
    for listed in engine.platforms:
        shown = listed.name + (f" ({listed.os_version})" if listed.os_version else "")
        if listed.os != facts.os:
            refused[listed.name] = (f"listed for {shown}, but it runs {facts.os} containers "
                                    f"({facts})")
        elif listed.os == "windows":
            # Windows runs no other architecture and only images of its own os.version line.
            if listed.architecture != facts.architecture:
                refused[listed.name] = f"listed for {shown}, but it runs {facts}"
            elif not os_version_in_line(facts.os_version, listed.os_version or ""):
                refused[listed.name] = (f"listed for {shown}, but it runs Windows "
                                        f"{facts.os_version or '(os.version not reported)'}")
        elif listed.architecture != facts.architecture:
            foreign.append(listed)
    return refused, tuple(foreign)


def by_emulation(facts: Facts, platform: Platform) -> bool:
    """Whether an engine that runs `facts` builds `platform` under emulation (QEMU): another
    architecture than its own, except i386 on x86_64, which the kernel runs natively (IA32)."""
    return platform.architecture != facts.architecture and \
        not (facts.architecture == "amd64" and platform.architecture == "386")


@dataclass(frozen=True)
class Health:
    """The probes' findings for one run: engines left out, and platforms an engine may not build."""
    left_out: dict[str, str] = field(default_factory=dict)  # engine → why, a sentence naming it
    refused: dict[tuple[str, str], str] = field(default_factory=dict)  # (engine, platform) → why
    # Not a finding, so not compared: the (engine, platform) pairs built under emulation, which
    # the report marks on their jobs.
    emulated: frozenset[tuple[str, str]] = field(default_factory=frozenset, compare=False)

    def usable(self, engine: str, platform: str) -> bool:
        return engine not in self.left_out and (engine, platform) not in self.refused

    def lines(self) -> list[str]:
        """One line per finding, as the run prints them before it starts."""
        return ([f"left out: {why}" for why in self.left_out.values()]
                + [f"engine {name} not used for {platform}: {why}"
                   for (name, platform), why in self.refused.items()])

    def no_engine_reason(self, platform: Platform, pool: Sequence[Engine]) -> str:
        """Why a platform whose pool is `pool` has no healthy engine: each engine's finding."""
        whys = [self.left_out.get(e.name) or f"engine {e.name}: {self.refused[(e.name, platform.name)]}"
                for e in pool]
        return f"no healthy engine for {platform.name}: {'; '.join(whys)}"

    def as_dict(self) -> dict:
        """For the report's build stage."""
        return {"left_out": dict(self.left_out),
                "not_used_for": [{"engine": e, "platform": p, "reason": why}
                                 for (e, p), why in self.refused.items()]}


@dataclass(frozen=True)
class Load:
    """How busy one engine of a pool is at the moment a job is ready."""
    engine: str
    running: int  # jobs holding one of its build slots
    slots: int  # its concurrency
    taken: int  # jobs it has taken in this run


def choose(loads: Sequence[Load], prefer: str | None = None) -> str | None:
    """The engine the next job goes to, or None while every engine of the pool is full.

    `prefer` (the engine that built the job's parent, so its layers are there) wins when it has
    a free slot. Otherwise the least busy engine for its size; on a tie the one that has taken
    fewer jobs so far, so a pool shares the work even when each job ends before the next is
    ready; then the builders file's order.
    """
    free = [load for load in loads if load.running < load.slots]
    for load in free:
        if load.engine == prefer:
            return load.engine
    if not free:
        return None
    order = {load.engine: i for i, load in enumerate(loads)}
    return min(free, key=lambda l: (l.running / l.slots, l.taken, order[l.engine])).engine
