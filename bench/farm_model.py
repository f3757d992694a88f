"""The farm bench's inputs: today's upstream family, the farms, and how long each job takes.

The family is bench/data/python-2026.yaml (upstream's versions data today) with the
buildpack-deps chain of bench/data/buildpack-deps-2026.yaml under its full variants, planned
by the real plan (`builder.plan.plan.plan`) for each farm's engines.

Durations, in minutes, are a model built from upstream's published layer times (the compile
step of the slim variant, upper bounds), as the request for this bench quotes them:

    amd64 7.5, arm64v8 7.6, arm32v5 and arm32v7 10–12 (12 taken: the range's upper end),
    i386 19, ppc64le 26, riscv64 about 2 hours (without LTO)

and, on amd64, about 6.5 minutes more for a full variant. Assumed where those figures are
silent, and named so in the output:
- arm32v6 (Alpine only) as arm32v5/v7: 12; s390x as arm64v8: 7.6 (a native server);
  windows-amd64 10 (an installer run, no compile);
- Alpine as slim (it builds without PGO, so the slim figure is an upper bound there too);
- the full variant's extra, and buildpack-deps' three layers (curl 1, scm 2, full 6 minutes
  on amd64: package installs), scaled by each platform's compile time over amd64's;
- no job over the 3-hour cap every upstream build runs under: riscv64's full variant
  (120 + 6.5 × 16 = 224 minutes by the scaling) is taken as 180, the most a build that
  succeeds can have taken;
- pushes, smoke tests and pulls not counted: they are minutes against hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.model.builders import Builders
from builder.model import versions
from builder.model.platforms import Platform
from builder.plan.plan import BuildJob, Plan, plan
from testbed.virtualfarm import farm, parents_across

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
PYTHON = DATA / "python-2026.yaml"
BASES = DATA / "buildpack-deps-2026.yaml"

COMPILE = {"amd64": 7.5, "arm64v8": 7.6, "arm32v5": 12.0, "arm32v7": 12.0, "i386": 19.0,
           "ppc64le": 26.0, "riscv64": 120.0}
ASSUMED = {"arm32v6": 12.0, "s390x": 7.6, "windows-amd64": 10.0}
FULL_EXTRA = 6.5  # minutes on amd64
BASE_LAYERS = {"curl": 1.0, "scm": 2.0, "full": 6.0}  # buildpack-deps' templates, on amd64
CAP = 180.0  # minutes: upstream's limit for one build


def minutes(job: BuildJob) -> float:
    """The modelled duration of `job` (see the module's text for where each figure is from)."""
    name = job.platform.name
    compile_time = COMPILE.get(name) or ASSUMED[name]
    scale = compile_time / COMPILE["amd64"]
    if job.variant.template in BASE_LAYERS:
        return BASE_LAYERS[job.variant.template] * scale
    full = job.variant.base_image.startswith("buildpack-deps:")
    return min(compile_time + (FULL_EXTRA * scale if full else 0.0), CAP)


@dataclass(frozen=True)
class Farm:
    name: str
    count: Callable[[Platform], int]  # engines of each platform


FARMS = (
    Farm("1 per architecture", lambda p: 1),
    Farm("2 per architecture", lambda p: 2),
    Farm("8 amd64 + 2 per other", lambda p: 8 if p.name == "amd64" else 2),
)


@dataclass(frozen=True)
class Release:
    """Every job of a release of the family on one farm, in plan order, with their parents."""
    jobs: tuple[BuildJob, ...]
    builders: Builders
    parents: dict[str, str | None]
    plans: tuple[Plan, ...]


def load() -> tuple[versions.Family, versions.Family]:
    return (versions.load(PYTHON, ROOT / "templates"),
            versions.load(BASES, ROOT / "examples" / "buildpack-deps" / "templates"))


def release(python: versions.Family, bases: versions.Family | None, the_farm: Farm,
            series: tuple[str, ...] = ()) -> Release:
    """The real plans of every version of `python` (or of `series`), and of buildpack-deps
    when `bases` is given (a patch release leaves the bases as they are), on `the_farm`."""
    chosen = [v for v in python.versions if not series or v.series in series]
    platforms = [p for v in chosen for variant in v.variants for p in variant.platforms]
    builders = farm(platforms, the_farm.count)
    plans = [plan(python, version, builders=builders) for version in chosen]
    if bases is None:
        parents = {job.key: job.parent for p in plans for job in p.jobs}
        return Release(tuple(j for p in plans for j in p.jobs), builders, parents, tuple(plans))
    base_plan = plan(bases, bases.versions[0], builders=builders)
    jobs = tuple(j for p in (base_plan, *plans) for j in p.jobs)
    return Release(jobs, builders, parents_across(plans, base_plan), (base_plan, *plans))
