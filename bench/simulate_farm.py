"""A full upstream-sized release on build farms, on a virtual clock: makespan against its lower
bound, per farm and scheduling order; the time a patch release takes to reach each platform's
tags under each publish policy; the registry requests of a release and of a no-op re-release.

The jobs are the real plan's (bench/data/python-2026.yaml: today's upstream family, with the
buildpack-deps chain of bench/data/buildpack-deps-2026.yaml under the full variants), and the
scheduler is the real one (`builder.farm.pools.assign`), driven by testbed/virtualfarm.py;
only the durations are a model (bench/farm_model.py says where each figure is from). Orders:

- first come: every chain equal, so the jobs go in the order they became ready;
- chain in jobs: the longest remaining chain counted in jobs, what the Runner does;
- chain in minutes: the same in modelled minutes, what it would do given durations.

Farms: one engine per platform, two, and eight amd64 with two of every other; each also with
its riscv64 engine (the platform whose work bounds every farm) lost at a random time.
Writes an SVG timeline per farm and loss to the directory it prints.

    .venv/bin/python bench/simulate_farm.py [--out DIR] [--seed N] [--no-budget]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

import farm_model  # noqa: E402 - bench/farm_model.py, beside this file
from farm_svg import timeline  # noqa: E402
from builder.farm.pools import chains  # noqa: E402
from builder.model.tags import tag_groups  # noqa: E402
from testbed.virtualfarm import Loss, critical_chain, lower_bound, simulate  # noqa: E402

GOAL = 1.05
LOST_PLATFORM = "riscv64"
RUNNER = "chain in jobs"  # the order the Runner uses


def orders(release: farm_model.Release) -> dict[str, dict[str, float]]:
    by_key = {job.key: job for job in release.jobs}
    return {"first come": dict.fromkeys(release.parents, 0.0),
            "chain in jobs": chains(release.parents, lambda key: 1.0),
            "chain in minutes": chains(release.parents,
                                       lambda key: farm_model.minutes(by_key[key]))}


@dataclass(frozen=True)
class Row:
    farm: str
    lost: str
    order: str
    makespan: float
    bound: float | None  # None: a pool lost its last engine, the run cannot complete
    redone: float  # minutes the lost engine's job had built, built again elsewhere
    bound_redone: float | None  # the bound with that work added
    utilisation: float
    bottleneck: float  # the riscv64 engines' utilisation
    unbuilt: int


def farm_rows(python, bases, the_farm: farm_model.Farm, rng: random.Random,
              out: Path) -> list[Row]:
    """A row per order of `the_farm`, then per order with an engine lost at a random time
    (drawn from the Runner's order's makespan); the Runner's order's SVG for each."""
    release = farm_model.release(python, bases, the_farm)
    bottleneck = [e.name for e in release.builders.engines
                  if e.platforms[0].name == LOST_PLATFORM]
    rows = _rows(the_farm, release, None, bottleneck, out)
    makespan = next(row.makespan for row in rows if row.order == RUNNER)
    loss = Loss(rng.choice(bottleneck), round(rng.uniform(0, makespan)))
    return rows + _rows(the_farm, release, loss, bottleneck, out)


def _rows(the_farm, release, loss: Loss | None, bottleneck: list[str], out: Path) -> list[Row]:
    rows = []
    for order, chain in orders(release).items():
        schedule = simulate(release.jobs, release.builders, minutes=farm_model.minutes,
                            parents=release.parents, chains=chain, loss=loss)
        bounds = [lower_bound(release.jobs, release.builders, minutes=farm_model.minutes,
                              parents=release.parents, loss=loss, redone=redone)
                  for redone in (0.0, schedule.redone)]
        if order == RUNNER:
            _picture(out, the_farm, loss, schedule, release)
        rows.append(Row(the_farm.name, f"{loss.engine} at {loss.at / 60:.1f} h" if loss else "-",
                        order, schedule.makespan, bounds[0], schedule.redone, bounds[1],
                        schedule.utilisation(), schedule.utilisation(bottleneck),
                        len(schedule.failed)))
    return rows


def _picture(out: Path, the_farm, loss, schedule, release) -> None:
    name = the_farm.name.replace(" ", "-").replace("+", "plus") + ("-lost" if loss else "")
    title = (f"{the_farm.name}{f', {loss.engine} lost at {loss.at / 60:.1f} h' if loss else ''}:"
             f" {len(release.jobs)} jobs, {schedule.makespan / 60:.1f} h, longest chain first")
    svg = timeline(title, schedule, critical_chain(schedule, release.parents),
                   {job.key: job.platform.name for job in release.jobs})
    (out / f"{name}.svg").write_text(svg)


def print_farms(rows: list[Row]) -> None:
    print(f"{'farm':<22} {'engine lost':<19} {'order':<16} {'makespan':>8} {'bound':>7} "
          f"{'ratio':>5} {'redone':>6} {'ratio*':>6} {'util':>4} {'riscv64':>7} {'unbuilt':>7}")
    for row in rows:
        ratio, fair = ((f"{row.makespan / row.bound:.3f}", f"{row.makespan / row.bound_redone:.3f}")
                       if row.bound else ("-", "-"))
        bound = f"{row.bound / 60:.1f} h" if row.bound else "none"
        print(f"{row.farm:<22} {row.lost:<19} {row.order:<16} {row.makespan / 60:>6.1f} h "
              f"{bound:>7} {ratio:>5} {row.redone / 60:>4.1f} h {fair:>6} {row.utilisation:>4.0%} "
              f"{row.bottleneck:>7.0%} {row.unbuilt:>7}")
    print("ratio: makespan over the lower bound; ratio*: over the bound with the redone work "
          "(what the lost engine's job had built) added; util: all engines' busy share")
    complete = [row for row in rows if row.bound and row.order == RUNNER]
    worst = max(complete, key=lambda row: row.makespan / row.bound)
    print(f"goal: within {GOAL}x of the lower bound on every farm. The Runner's order: at most "
          f"{worst.makespan / worst.bound:.3f}x ({worst.farm}, {worst.lost} lost), "
          f"{worst.makespan / worst.bound_redone:.3f}x with its redone work counted: "
          f"{'met' if worst.makespan / worst.bound <= GOAL else 'missed'}")


def print_skew(python, rng: random.Random) -> None:
    """A patch release of 3.14 (its bases unchanged) on each farm, with and without the loss:
    when each platform's members of the 3.14 tags hold the new patch. Default: every tag
    waits for every platform of the run, and a failed platform holds back all of them;
    --allow-lagging, with a release per platform publishing as its own jobs end: each
    platform at its own time, a failed one keeping the previous patch (named as lagging).
    The mean is over the tags' members (tag × platform), what a user of a tag waits."""
    print("\na patch release of 3.14 (44 jobs, bases unchanged): hours until each platform's "
          "members of the 3.14 tags hold it")
    members = [p.name + (f" {p.os_version}" if p.os_version else "")
               for variants in tag_groups(python, python.version("3.14")).values()
               for variant in variants for p in variant.platforms]
    for the_farm in farm_model.FARMS:
        release = farm_model.release(python, None, the_farm, ("3.14",))
        chain = chains(release.parents, lambda key: 1.0)
        first = simulate(release.jobs, release.builders, minutes=farm_model.minutes,
                         parents=release.parents, chains=chain)
        lost = [e.name for e in release.builders.engines if e.platforms[0].name == LOST_PLATFORM]
        loss = Loss(rng.choice(lost), round(rng.uniform(0, first.makespan)))
        for schedule, label in ((first, "-"), (simulate(
                release.jobs, release.builders, minutes=farm_model.minutes,
                parents=release.parents, chains=chain, loss=loss), f"{loss.engine} lost")):
            done = _platform_times(release, schedule)
            everyone = None if None in done.values() else max(done.values())
            waits = [done[name] for name in members if done[name] is not None]
            behind = [name for name, at in done.items() if at is None]
            print(f"  {the_farm.name:<22} {label:<17} default: every member {_hours(everyone)}; "
                  f"--allow-lagging: mean {sum(waits) / len(waits) / 60:.1f} h"
                  + (f", {', '.join(behind)} kept at the previous patch" if behind else ""))
            print(f"  {'':<40} " + "  ".join(f"{name} {_hours(at)}" for name, at in done.items()))


def _platform_times(release, schedule) -> dict[str, float | None]:
    """Platform → when its last job of the release ended; None when one was not built."""
    done: dict[str, float | None] = {}
    built = schedule.built
    for job in release.jobs:
        name = job.platform.name + (f" {job.platform.os_version}"
                                    if job.platform.os_version else "")
        run = built.get(job.key)
        if name in done and done[name] is None:
            continue
        done[name] = None if run is None else max(done.get(name) or 0.0, run.end)
    return done


def _hours(at: float | None) -> str:
    return "never (not built)" if at is None else f"{at / 60:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where the SVGs go (default: a new directory)")
    parser.add_argument("--seed", type=int, default=1, help="for the engine lost and its time")
    parser.add_argument("--no-budget", action="store_true", help="skip the registry budget")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="farmsim-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    python, bases = farm_model.load()
    release = farm_model.release(python, bases, farm_model.FARMS[0])
    print(f"{len(release.jobs)} jobs: {len(release.plans) - 1} Python versions' plans and "
          f"buildpack-deps' ({len(release.plans[0].jobs)} jobs) under their full variants")
    rows = [row for the_farm in farm_model.FARMS
            for row in farm_rows(python, bases, the_farm, rng, out)]
    print_farms(rows)
    print_skew(python, rng)
    if not args.no_budget:
        import farm_budget  # bench/farm_budget.py: only this part needs requests
        farm_budget.report(python, bases)
    print(f"\nSVG timelines (longest chain first): {out}")


if __name__ == "__main__":
    main()
