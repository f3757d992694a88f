"""Which waiting job takes a freed slot: the longest remaining chain first (pure, no engine).

The rule (`builder.farm.pools.chains` and `assign`) is tested on values, then on the virtual
farm (testbed/virtualfarm.py), which schedules the real plan's jobs with it on a virtual
clock: the order shortens a run where a long chain would otherwise start late, changes
nothing where no job waits on another, and never leaves a job waiting while an engine of its
pool has a free slot.
"""
from __future__ import annotations

import random

import pytest

from builder.farm.pools import Load, Waiting, assign, chains
from builder.model import versions
from builder.plan.plan import plan
from testbed.virtualfarm import Loss, farm, lower_bound, parents_across, simulate
from tests.helpers.paths import ROOT

DATA = ROOT / "bench" / "data"  # today's upstream family, as the farm bench plans it


# --- the rule, on values ---------------------------------------------------------------------

def test_a_chain_is_a_job_and_the_longest_chain_built_from_it():
    parents = {"curl": None, "scm": "curl", "full": "scm", "py1": "full", "py2": "full",
               "slim": None}
    assert chains(parents, lambda key: 1.0) == {
        "curl": 4, "scm": 3, "full": 2, "py1": 1, "py2": 1, "slim": 1}
    cost = {"curl": 1, "scm": 2, "full": 5, "py1": 30, "py2": 40, "slim": 60}
    found = chains(parents, cost.__getitem__)
    assert found["curl"] == 48 and found["full"] == 45 and found["slim"] == 60


def test_a_freed_slot_goes_to_the_longest_chain_then_to_the_first_come():
    loads = [Load("a", 0, 1, 0)]
    waiting = [Waiting("slim", ("a",), chain=1, since=0), Waiting("curl", ("a",), chain=4, since=1)]
    assert assign(waiting, loads) == {"curl": "a"}
    tied = [Waiting("late", ("a",), chain=2, since=5), Waiting("early", ("a",), chain=2, since=3)]
    assert assign(tied, loads) == {"early": "a"}


def test_every_job_whose_pool_has_room_gets_a_slot_and_a_full_pool_holds_back_no_other():
    loads = [Load("amd64", 1, 1, 3), Load("arm-1", 0, 1, 0), Load("arm-2", 0, 2, 1)]
    waiting = [Waiting("long-amd64", ("amd64",), chain=9),
               Waiting("arm-a", ("arm-1", "arm-2"), chain=1, since=1),
               Waiting("arm-b", ("arm-1", "arm-2"), chain=1, since=2),
               Waiting("arm-c", ("arm-1", "arm-2"), chain=1, since=3),
               Waiting("arm-d", ("arm-1", "arm-2"), chain=1, since=4)]
    # amd64 is full: its job waits; arm's three free slots go to the first three come.
    assert assign(waiting, loads) == {"arm-a": "arm-1", "arm-b": "arm-2", "arm-c": "arm-2"}


def test_the_engine_choice_is_choose_s_the_parents_engine_first():
    loads = [Load("a", 0, 1, 0), Load("b", 0, 1, 5)]
    assert assign([Waiting("child", ("a", "b"), prefer="b")], loads) == {"child": "b"}
    assert assign([Waiting("job", ("a", "b"))], loads) == {"job": "a"}


# --- on the virtual farm, with the real plan ---------------------------------------------------

@pytest.fixture(scope="module")
def families():
    return (versions.load(DATA / "python-2026.yaml", ROOT / "templates"),
            versions.load(DATA / "buildpack-deps-2026.yaml",
                          ROOT / "examples" / "buildpack-deps" / "templates"))


def _amd64_run(families, engines: int):
    """3.14's amd64 jobs but bookworm, and buildpack-deps' trixie chain, on `engines` amd64
    engines: the Python jobs first in the list, so that first come, first served starts
    buildpack-deps' chain last."""
    python, bases = families
    builders = farm([p for v in python.versions[1].variants for p in v.platforms
                     if p.name == "amd64"], lambda p: engines)
    plans = [plan(python, python.versions[1], ("trixie", "slim-trixie", "slim-bookworm",
                                               "alpine3.24", "alpine3.23"),
                  platforms=("amd64",), builders=builders)]
    base_plan = plan(bases, bases.versions[0], ("trixie-curl", "trixie-scm", "trixie"),
                     platforms=("amd64",), builders=builders)
    jobs = [*plans[0].jobs, *base_plan.jobs]
    return jobs, builders, parents_across(plans, base_plan)


def _minutes(job) -> float:
    return {"trixie-curl": 3, "trixie-scm": 4, "trixie": 10, "bookworm-curl": 3,
            "bookworm-scm": 4, "bookworm": 10}.get(job.variant.name, 15) \
        if job.version.full == "1.0.0" else 15


def test_on_two_engines_the_longest_chain_first_shortens_the_run(families):
    jobs, builders, parents = _amd64_run(families, 2)
    first_come = simulate(jobs, builders, minutes=_minutes, parents=parents,
                          chains=dict.fromkeys(parents, 0.0))
    by_chain = simulate(jobs, builders, minutes=_minutes, parents=parents,
                        chains=chains(parents, lambda key: 1.0))
    # First come: buildpack-deps' curl → scm → full and Python's trixie on it (32 minutes)
    # start after the four slim and alpine jobs, and one engine idles for all of it. Longest
    # chain first: the chain starts at once, beside the others.
    assert first_come.makespan == 62 and by_chain.makespan == 47
    assert lower_bound(jobs, builders, minutes=_minutes, parents=parents) == 46
    assert by_chain.built.keys() == first_come.built.keys() == {job.key for job in jobs}


def test_where_nothing_is_built_from_another_the_order_changes_nothing(families):
    python, _ = families
    builders = farm([p for v in python.versions[1].variants for p in v.platforms], lambda p: 2)
    slim = plan(python, python.versions[1], ("slim-trixie", "alpine3.24", "alpine3.23"),
                builders=builders)
    parents = {job.key: None for job in slim.jobs}
    minutes = lambda job: 10.0 + len(job.key)  # noqa: E731 - unequal, so that an order shows
    runs = [simulate(slim.jobs, builders, minutes=minutes, parents=parents, chains=order).runs
            for order in (dict.fromkeys(parents, 0.0), chains(parents, lambda key: 1.0))]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("seed", range(6))
def test_no_job_waits_while_an_engine_of_its_pool_has_a_free_slot(families, seed):
    """Random durations, two engines per platform, one of them lost at a random time: every
    job is built, and at every moment a job waited, each engine it could take was full."""
    python, bases = families
    rng = random.Random(seed)
    platforms = [p for v in python.versions[1].variants for p in v.platforms]
    builders = farm(platforms, lambda p: 2)
    plans = [plan(python, version, builders=builders) for version in python.versions[:3]]
    base_plan = plan(bases, bases.versions[0], builders=builders)
    jobs = [job for p in (*plans, base_plan) for job in p.jobs]
    rng.shuffle(jobs)  # any arrival order; a parent still arrives only once it is built
    parents = parents_across(plans, base_plan)
    durations = {job.key: rng.uniform(1, 120) for job in jobs}
    loss = Loss(rng.choice(builders.engines).name, rng.uniform(0, 600))
    schedule = simulate(jobs, builders, minutes=lambda job: durations[job.key], parents=parents,
                        chains=chains(parents, durations.__getitem__), loss=loss)
    assert schedule.failed == {} and schedule.built.keys() == set(durations)
    assert any(run.start > schedule.ready[run.key] for run in schedule.runs)  # some did wait
    moments = sorted({run.start for run in schedule.runs} | {run.end for run in schedule.runs})
    for job in jobs:
        start = schedule.built[job.key].start
        for moment in (t for t in moments if schedule.ready[job.key] <= t < start):
            for engine in job.pool:
                if engine == loss.engine and moment >= loss.at:
                    continue  # gone: it takes no more jobs
                busy = sum(1 for run in schedule.runs
                           if run.engine == engine and run.start <= moment < run.end)
                assert busy == schedule.slots[engine], (job.key, engine, moment)

