"""`plan`: a version's jobs as text, as JSON, or as a CI matrix to fan the build out with.

The plan is `builder.plan.plan`'s and its listing `builder.plan.listing`'s; this is the edge
that loads the versions and builders files and reads this machine's architecture for the
emulation column. No engine is reached, unless `--probe` asks each engine of the plan's pools
what it is (`builder.farm.health`: its version, image store and builder per platform).
"""
from __future__ import annotations

import json
import platform as host
import sys
from dataclasses import dataclass
from typing import TextIO

from builder.farm import engines
from builder.farm import health
from builder.model import versions
from builder.model.errors import EXIT_OK, InputError
from builder.model.platforms import from_oci
from builder.model.report import Report, Status
from builder.options import DEFAULT_VERSIONS
from builder.plan import listing
from builder.plan.plan import Plan
from builder.plan.plan import plan as make_plan

FORMATS = ("text", "json", "github-matrix")


@dataclass(frozen=True)
class PlanOptions:
    """`plan`'s options."""
    version: str
    variants: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    builders: str | None = None
    versions: str = DEFAULT_VERSIONS
    arch_namespace: bool = False
    format: str = "text"
    per: str = "job"  # github-matrix: an entry per job or per platform
    probe: bool = False  # ask the engines their store and builder


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    native: frozenset[str]  # this machine's architectures
    document: dict  # `listing.document`
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        report.repository = self.plan.family.repository
        report.jobs = listing.planned_jobs(self.plan, self.native)
        report.stage("plan", Status.OK, jobs=len(self.plan.jobs),
                     skipped=len(self.plan.skipped), emulated=self.document["emulated"])


def run(options: PlanOptions, out: TextIO) -> PlanResult:
    """The plan on `out` in the chosen format; the emulation warning on stderr."""
    if options.format not in FORMATS:
        raise InputError(f"{options.format!r} is no format; use {', '.join(FORMATS)}",
                         field="--format")
    if options.per not in listing.MATRIX_PER:
        raise InputError(f"{options.per!r}: a matrix entry is per {' or per '.join(listing.MATRIX_PER)}",
                         field="--per")
    family = versions.load(options.versions)
    the_plan = make_plan(family, options.version, options.variants, options.platforms,
                         builders=engines.load(options.builders, require_engine=False),
                         registry=options.registry, arch_namespace=options.arch_namespace)
    native = this_machine()
    result = PlanResult(the_plan, native, listing.document(the_plan, native))
    probed = probe(the_plan) if options.probe else None
    if probed is not None:
        result.document["engines"] = probed.as_dict()
    if options.format == "json":
        print(json.dumps(result.document, indent=2), file=out)
    elif options.format == "github-matrix":
        # One line: what `echo "matrix=$(…)" >> "$GITHUB_OUTPUT"` takes.
        print(json.dumps(listing.matrix(the_plan, native, options.per)), file=out)
    else:
        print(the_plan.describe(), file=out)
        for line in (probed.engine_lines() + probed.lines()) if probed else ():
            print(line, file=out)
    warning = listing.emulation_warning(the_plan, native)
    if warning:
        print(warning, file=sys.stderr)
    return result


def probe(the_plan: Plan) -> health.Health:
    """Each engine of the plan's pools asked what it is and how it builds each of its jobs'
    platforms; emulation is not proved here (a build's probe runs a container for that)."""
    needed = health.wanted(the_plan)
    pool = [e for e in the_plan.builders.engines if e.name in needed]
    return health.check(pool, needed, lambda platform: None)


def this_machine() -> frozenset[str]:
    """The OCI architectures this machine runs without QEMU (none known: an unknown kernel)."""
    try:
        return listing.host_architectures(from_oci("linux", host.machine()).architecture)
    except InputError:
        return frozenset()
