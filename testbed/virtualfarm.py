"""A build farm on a virtual clock: the real plan's jobs scheduled by the real scheduler.

No engine runs anything: each job takes the minutes a duration model gives it, and time jumps
from one event (a job ending, an engine lost) to the next. At every event the waiting jobs are
handed to `builder.farm.pools.assign`, exactly as the Runner of `builder.farm.runner` hands them
when a job becomes ready or a slot frees: the same loads, the same preferred engine (the one
that built the parent), the same arrival order, the same remaining chains. An engine lost
mid-run takes no more jobs, and the job it was building is built again from the start, once,
on another engine of its pool, as the Runner's failover does; with no engine left, the job and
everything built FROM it fail.

`simulate` is what the farm bench (bench/simulate_farm.py) and the scheduling tests run.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from builder.farm import pools
from builder.model.builders import Builders, Engine
from builder.model.platforms import Platform
from builder.model.reference import ImageRef
from builder.model.tags import variant_tags
from builder.model.versions import Family
from builder.plan.plan import BuildJob, Plan


@dataclass(frozen=True)
class Loss:
    """An engine that goes away at `at` minutes into the run."""
    engine: str
    at: float


@dataclass(frozen=True)
class Run:
    """One attempt of a job on an engine, in minutes from the start."""
    key: str
    engine: str
    start: float
    end: float
    lost: bool = False  # its engine went away before it ended


@dataclass
class Schedule:
    """What the farm did: every attempt, the jobs that could not be built, and why."""
    runs: list[Run]
    failed: dict[str, str]  # job key → why
    slots: dict[str, int]  # engine → its concurrency
    ready: dict[str, float] = field(default_factory=dict)  # job key → when it last became ready

    @property
    def built(self) -> dict[str, Run]:
        return {run.key: run for run in self.runs if not run.lost}

    @property
    def makespan(self) -> float:
        return max((run.end for run in self.runs), default=0.0)

    @property
    def redone(self) -> float:
        """Minutes of building lost with an engine, done again by the failover."""
        return sum(run.end - run.start for run in self.runs if run.lost)

    def utilisation(self, engines: Sequence[str] | None = None) -> float:
        """Busy slot-minutes over the slot-minutes the farm (or `engines`) had until the end."""
        names = set(self.slots if engines is None else engines)
        busy = sum(run.end - run.start for run in self.runs if run.engine in names)
        capacity = sum(self.slots[name] for name in names) * self.makespan
        return busy / capacity if capacity else 0.0


def simulate(jobs: Sequence[BuildJob], builders: Builders, *,
             minutes: Callable[[BuildJob], float], parents: Mapping[str, str | None],
             chains: Mapping[str, float], loss: Loss | None = None) -> Schedule:
    """Run `jobs` (in plan order: a parent before its children) on `builders`' engines.

    `parents` is every job's parent key (the plan's, and any edge between families a caller
    adds), `chains` the remaining chain `assign` orders by (all equal: first come, first
    served), `minutes` each job's duration."""
    clock = _Clock(jobs, builders, minutes, parents, chains)
    if loss is not None:
        clock.at(loss.at, ("lose", loss.engine))
    for job in jobs:
        if parents.get(job.key) is None:
            clock.arrive(job.key)
    clock.run()
    return Schedule(clock.runs, clock.failed, clock.slots, clock.ready)


class _Clock:
    """The board of the run: running and taken jobs per engine, engines lost, the waiting jobs."""

    def __init__(self, jobs, builders, minutes, parents, chains) -> None:
        self.jobs = {job.key: job for job in jobs}
        self.engines = [e.name for e in builders.engines]
        self.slots = {e.name: e.concurrency for e in builders.engines}
        self.minutes, self.parents, self.chains = minutes, parents, chains
        self.children: dict[str, list[str]] = {key: [] for key in self.jobs}
        for key, parent in parents.items():
            if parent is not None:
                self.children[parent].append(key)
        self.running = dict.fromkeys(self.engines, 0)
        self.taken = dict.fromkeys(self.engines, 0)
        self.lost: set[str] = set()
        self.waiting: dict[str, int] = {}  # key → its arrival, in order
        self.tried: dict[str, set[str]] = {key: set() for key in self.jobs}
        self.on: dict[str, tuple[str, float]] = {}  # running job → (engine, start)
        self.built_on: dict[str, str] = {}  # built job → its engine
        self.runs: list[Run] = []
        self.failed: dict[str, str] = {}
        self.ready: dict[str, float] = {}
        self.now = 0.0
        self._events: list = []
        self._order = itertools.count()
        self._arrivals = itertools.count()

    def at(self, when: float, event: tuple) -> None:
        heapq.heappush(self._events, (when, next(self._order), event))

    def arrive(self, key: str) -> None:
        self.waiting[key] = next(self._arrivals)
        self.ready[key] = self.now

    def run(self) -> None:
        while True:
            self.dispatch()
            if not self._events:
                break
            when, _, event = heapq.heappop(self._events)
            self.now = when
            if event[0] == "end":
                self.end(*event[1:])
            else:
                self.lose(event[1])

    def dispatch(self) -> None:
        waiting = []
        for key, arrival in list(self.waiting.items()):
            job = self.jobs[key]
            left = tuple(name for name in job.pool
                         if name not in self.lost and name not in self.tried[key])
            if not left:
                del self.waiting[key]
                self.fail(key, "no engine of its pool is left to build it on")
                continue
            parent = self.parents.get(key)
            prefer = self.built_on.get(parent) if parent else None
            waiting.append(pools.Waiting(key, left, prefer, self.chains[key], arrival))
        loads = [pools.Load(name, self.running[name], self.slots[name], self.taken[name])
                 for name in self.engines if name not in self.lost]
        for key, engine in pools.assign(waiting, loads).items():
            del self.waiting[key]
            self.running[engine] += 1
            self.taken[engine] += 1
            self.on[key] = (engine, self.now)
            self.at(self.now + self.minutes(self.jobs[key]), ("end", key, engine, self.now))

    def end(self, key: str, engine: str, start: float) -> None:
        if self.on.get(key) != (engine, start):
            return  # that attempt was lost with its engine
        del self.on[key]
        self.running[engine] -= 1
        self.runs.append(Run(key, engine, start, self.now))
        self.built_on[key] = engine
        for child in self.children[key]:
            self.arrive(child)

    def lose(self, engine: str) -> None:
        self.lost.add(engine)
        for key, (on, start) in list(self.on.items()):
            if on != engine:
                continue
            del self.on[key]
            self.running[engine] -= 1
            self.runs.append(Run(key, engine, start, self.now, lost=True))
            if self.tried[key]:
                self.fail(key, f"engine {engine} went away under its failover too")
                continue
            self.tried[key].add(engine)
            self.arrive(key)

    def fail(self, key: str, why: str) -> None:
        self.failed[key] = why
        for child in self.children[key]:
            self.fail(child, f"not built, its parent {key} failed")


def farm(platforms: Sequence[Platform], count: Callable[[Platform], int]) -> Builders:
    """`count(platform)` engines of one build slot for each platform, one machine per
    architecture as the official images' farm has them (a Windows one per os.version line);
    named after what they build: amd64-1, amd64-2, windows-amd64-10.0.26100-1."""
    engines = []
    for target in dict.fromkeys(platforms):
        name = target.name + (f"-{target.os_version}" if target.os_version else "")
        engines += [Engine(f"{name}-{n}", "unix:///dev/null", (target,),
                           os_version=target.os_version) for n in range(1, count(target) + 1)]
    return Builders(tuple(engines))


def parents_across(plans: Sequence[Plan], bases: Plan) -> dict[str, str | None]:
    """Every job's parent: its plan's, else the job of `bases` (another family's plan) that
    builds the image its FROM names, on its platform (python's `FROM buildpack-deps:trixie`
    → buildpack-deps' trixie job), as a run holding both families would wait for it."""
    tagged = _tagged(bases.family, bases)
    found: dict[str, str | None] = {job.key: job.parent for job in bases.jobs}
    for plan in plans:
        for job in plan.jobs:
            ref = ImageRef.parse(job.variant.base_image)
            base = tagged.get((ref.familiar_repository, ref.tag, job.platform.name))
            found[job.key] = job.parent or base
    return found


def _tagged(family: Family, plan: Plan) -> dict[tuple[str, str | None, str], str]:
    """(repository, tag, platform) → the key of the job whose image that tag lists."""
    tagged = {}
    for job in plan.jobs:
        tags = variant_tags(family, plan.version, job.variant)
        for tag in (*tags.tags, *tags.shared_tags):
            tagged.setdefault((family.repository, tag, job.platform.name), job.key)
    return tagged


def lower_bound(jobs: Sequence[BuildJob], builders: Builders, *,
                minutes: Callable[[BuildJob], float], parents: Mapping[str, str | None],
                loss: Loss | None = None, redone: float = 0.0) -> float | None:
    """No schedule ends sooner than the longest parent→child chain, nor than any pool's work
    over its slots (with an engine lost at `loss.at`, over the slots it had until then and
    the others' after, and with `redone` minutes more work in its pool: what the job it was
    building had done, which its failover builds again). None: a pool loses its last engine,
    so the run cannot complete."""
    by_key = {job.key: job for job in jobs}
    chain = max(pools.chains(parents, lambda key: minutes(by_key[key])).values(), default=0.0)
    slots = {e.name: e.concurrency for e in builders.engines}
    work: dict[tuple[str, ...], float] = {}
    for job in jobs:
        work[job.pool] = work.get(job.pool, 0.0) + minutes(job)
    bound = chain
    for pool, total in work.items():
        every = sum(slots[name] for name in pool)
        if loss is None or loss.engine not in pool:
            bound = max(bound, total / every)
            continue
        total += redone
        rest = every - slots[loss.engine]
        if total <= every * loss.at:
            bound = max(bound, total / every)
        elif rest == 0:
            return None
        else:
            bound = max(bound, loss.at + (total - every * loss.at) / rest)
    return bound


def critical_chain(schedule: Schedule, parents: Mapping[str, str | None]) -> list[Run]:
    """The runs that made the schedule as long as it is, last first: from the run that ended
    last back through what each one waited for, its parent or the run before it on its
    engine, while that ended exactly when it started."""
    built = schedule.built
    by_end = {(run.engine, run.end): run for run in schedule.runs}
    attempts = {(run.key, run.end): run for run in schedule.runs if run.lost}
    if not schedule.runs:
        return []
    chain = [max(schedule.runs, key=lambda run: run.end)]
    while True:
        run = chain[-1]
        parent = built.get(parents.get(run.key) or "")
        if parent is not None and parent.end == run.start:
            chain.append(parent)
        elif (run.key, run.start) in attempts:  # built again after its engine went away
            chain.append(attempts[(run.key, run.start)])
        elif (run.engine, run.start) in by_end:
            chain.append(by_end[(run.engine, run.start)])
        else:
            return chain
