"""Engine pools: which engines may build a platform, which of them are healthy, and which takes a job.

Pure: facts in (what each engine says it runs, how busy each one is), decisions out. The probes
that gather the facts are `builder.farm.health`; the Runner of `builder.farm.runner` asks `assign`
whenever a job is ready or a slot frees, so assignment follows the load at run time, not a split
fixed in advance. Which of the waiting jobs goes first is their remaining chain's (`chains`): a
job that others are built FROM starts before a job nothing waits on, so the longest chain of the
run is not left to start last.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from builder.model.builders import BUILDKIT, CLASSIC, Engine
from builder.model.errors import InputError
from builder.model.platforms import Platform, from_oci, os_version_in_line

_WINDOWS_VERSION = re.compile(r"(\d+)\.(\d+)[. ](\d+)")  # "10.0.17763…" or "10.0 17763 (…)"
# `docker info`'s DriverStatus on an engine that keeps images in the containerd image store.
_CONTAINERD_STORE = ["driver-type", "io.containerd.snapshotter.v1"]


@dataclass(frozen=True)
class Facts:
    """What an engine reports it runs (`docker version` / `docker info`)."""
    os: str  # OCI os: linux, windows
    architecture: str  # OCI architecture, normalized: amd64, arm64, 386
    os_version: str | None = None  # Windows: 10.0.17763 (the build line, maybe with its revision)
    # Not compared: what the engine is, not what it runs.
    server: str = field(default="", compare=False)  # its version: 28.5.2
    driver: str = field(default="", compare=False)  # its storage driver: overlay2, overlayfs
    containerd: bool = field(default=False, compare=False)  # images in the containerd image store

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f" {self.os_version}" if self.os_version else "")

    @property
    def store(self) -> str:
        """Where the engine keeps its images, as the probe's line says it."""
        driver = f" ({self.driver})" if self.driver else ""
        return (f"containerd image store{driver}" if self.containerd
                else f"graphdriver store{driver}")

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
        status = [list(pair) for pair in info.get("DriverStatus") or ()]
        return cls(os, architecture, os_version, server=version.get("Version") or "",
                   driver=info.get("Driver") or "", containerd=_CONTAINERD_STORE in status)


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


def classic_drops_variant(facts: Facts, platform: Platform) -> bool:
    """Whether the engine's classic builder would build `platform` wrongly: on the containerd
    image store it leaves an arm variant other than the default v7 out of the image config, so
    an arm32v5 build comes out as plain linux/arm (moby#47823; --no-cache does not help)."""
    return (facts.containerd and platform.os == "linux" and platform.architecture == "arm"
            and (platform.variant or "v7") != "v7")


@dataclass(frozen=True)
class Backend:
    """How one engine builds one platform: its builder, and where it keeps the image."""
    builder: str = CLASSIC  # CLASSIC or BUILDKIT
    containerd: bool = False  # the engine keeps images in the containerd image store

    def wrong_platform(self, engine: str, platform: Platform, got_variant: str | None) -> str:
        """Why `engine` can have returned another platform's image: the cause, and what to do."""
        if self.builder == BUILDKIT:
            return ("BuildKit built another platform than the one asked for, which no known "
                    "cause explains: keep the job's log and report it")
        if self.containerd and not got_variant and platform.variant:
            return (f"the classic builder on the containerd image store drops the variant "
                    f"{platform.variant} from the image config (moby#47823); give engine {engine} "
                    "`builder: buildkit` in the builders file, or build it on a graphdriver store")
        if self.containerd:
            return ("the classic builder on the containerd image store builds FROM the engine's "
                    "own platform of a list it holds; give engine "
                    f"{engine} `builder: buildkit` in the builders file")
        return "the classic builder's cache mixed platforms up: run again with --no-cache"


def backend(engine: Engine, facts: Facts, platform: Platform,
            buildx_problem: Callable[[], str | None]) -> tuple[Backend, str | None]:
    """How `engine` builds `platform`, and why it may not (None: it may). Its `builder:` when the
    builders file sets one, else classic, and BuildKit where its classic builder would build the
    platform wrongly (`classic_drops_variant`). `buildx_problem`: why no buildx runs here."""
    if platform.os == "windows":
        return Backend(CLASSIC, facts.containerd), None  # Windows builds classic, as upstream
    wrong = classic_drops_variant(facts, platform)
    chosen = Backend(engine.builder or (BUILDKIT if wrong else CLASSIC), facts.containerd)
    if chosen.builder == CLASSIC and wrong:
        return chosen, (f"its classic builder on the {facts.store} would drop the variant "
                        f"{platform.variant} of {platform.oci} (moby#47823); set `builder: "
                        "buildkit` for it in the builders file (BuildKit keeps the variant), or "
                        f"build {platform.name} on an engine with the graphdriver store")
    if chosen.builder == BUILDKIT:
        missing = buildx_problem()
        if missing:
            why = ("`builder: buildkit` in the builders file" if engine.builder else
                   f"its classic builder on the {facts.store} would drop the variant "
                   f"{platform.variant}")
            return chosen, f"it builds {platform.name} with BuildKit ({why}), and {missing}"
    return chosen, None


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
    # Neither are these: each engine probed (name → its facts), and how it builds each platform.
    engines: dict[str, Facts] = field(default_factory=dict, compare=False)
    backends: dict[tuple[str, str], Backend] = field(default_factory=dict, compare=False)

    def usable(self, engine: str, platform: str) -> bool:
        return engine not in self.left_out and (engine, platform) not in self.refused

    def backend(self, engine: str, platform: str) -> Backend:
        return self.backends.get((engine, platform), Backend())

    def lines(self) -> list[str]:
        """One line per finding, as the run prints them before it starts."""
        return ([f"left out: {why}" for why in self.left_out.values()]
                + [f"engine {name} not used for {platform}: {why}"
                   for (name, platform), why in self.refused.items()])

    def engine_lines(self) -> list[str]:
        """One line per engine probed: what it is, its store, and its builder per platform."""
        found = []
        for name, facts in self.engines.items():
            builders: dict[str, list[str]] = {}
            for (engine, platform), chosen in self.backends.items():
                if engine == name and (engine, platform) not in self.refused:
                    builders.setdefault(chosen.builder, []).append(platform)
            used = "; ".join(f"with {b}: {', '.join(p)}" for b, p in builders.items())
            found.append(f"engine {name}: Docker {facts.server or '?'} ({facts}), "
                         f"{facts.store}; " + (f"builds {used}" if used else
                                               "builds none of the platforms asked of it"))
        return found

    def no_engine_reason(self, platform: Platform, pool: Sequence[Engine]) -> str:
        """Why a platform whose pool is `pool` has no healthy engine: each engine's finding."""
        whys = [self.left_out.get(e.name) or f"engine {e.name}: {self.refused[(e.name, platform.name)]}"
                for e in pool]
        return f"no healthy engine for {platform.name}: {'; '.join(whys)}"

    def as_dict(self) -> dict:
        """For the report's build stage."""
        return {"left_out": dict(self.left_out),
                "not_used_for": [{"engine": e, "platform": p, "reason": why}
                                 for (e, p), why in self.refused.items()],
                "probed": {name: {"server": f.server, "store": f.store,
                                  "containerd": f.containerd,
                                  "builders": {p: b.builder for (e, p), b in self.backends.items()
                                               if e == name}}
                           for name, f in self.engines.items()}}


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


@dataclass(frozen=True)
class Waiting:
    """A job ready to build, waiting for a build slot."""
    key: str
    engines: tuple[str, ...]  # the engines it may take: its pool's healthy ones not yet tried
    prefer: str | None = None  # the engine that built its parent
    chain: float = 1.0  # its remaining chain (`chains`): the longest goes first
    since: int = 0  # when it became ready, in arrivals: on an equal chain, first come first


def chains(parents: Mapping[str, str | None], cost: Callable[[str], float]) -> dict[str, float]:
    """Each job's remaining chain: its own `cost` plus the longest remaining chain of the jobs
    built FROM it (`parents`: job → the job it builds FROM, or None), so the first job of the
    run's longest chain has the run's largest value. With a cost of 1 it counts jobs."""
    children: dict[str, list[str]] = {key: [] for key in parents}
    for key, parent in parents.items():
        if parent in children:
            children[parent].append(key)
    found: dict[str, float] = {}
    # Children before their parents, without recursion: a family's chains are short, but a
    # run of many versions may put hundreds of jobs under one base.
    order, stack = [], [key for key, parent in parents.items() if parent not in children]
    while stack:
        key = stack.pop()
        order.append(key)
        stack.extend(children[key])
    for key in reversed(order):
        found[key] = cost(key) + max((found[child] for child in children[key]), default=0.0)
    return found


def assign(waiting: Sequence[Waiting], loads: Sequence[Load]) -> dict[str, str]:
    """Which waiting jobs take a slot now, and on which engine: job key → engine name.

    The jobs go in the order of their remaining chain, longest first, then the order they
    became ready in; each takes the engine `choose` picks among those of its own it may take
    (`loads` are every usable engine's, in the builders file's order), so a job whose pool is
    full does not hold back one whose pool has room. Every job whose pool has a free slot gets
    one: no engine idles while a job it may build waits.
    """
    board = {load.engine: load for load in loads}
    taken: dict[str, str] = {}
    for job in sorted(waiting, key=lambda w: (-w.chain, w.since)):
        candidates = [board[name] for name in board if name in job.engines]
        chosen = choose(candidates, prefer=job.prefer)
        if chosen is not None:
            taken[job.key] = chosen
            load = board[chosen]
            board[chosen] = Load(chosen, load.running + 1, load.slots, load.taken + 1)
    return taken
