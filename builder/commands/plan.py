"""`plan`: a version's jobs as text, as JSON, or as a CI matrix to fan the build out with.

The plan is `builder.plan.plan`'s and its listing `builder.plan.listing`'s; this is the edge
that loads the versions and builders files (no engine is reached) and reads this machine's
architecture for the emulation column.
"""
from __future__ import annotations

import json
import platform as host
import sys
from dataclasses import dataclass
from typing import TextIO

from builder.farm import engines
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
    if options.format == "json":
        print(json.dumps(result.document, indent=2), file=out)
    elif options.format == "github-matrix":
        # One line: what `echo "matrix=$(…)" >> "$GITHUB_OUTPUT"` takes.
        print(json.dumps(listing.matrix(the_plan, native, options.per)), file=out)
    else:
        print(the_plan.describe(), file=out)
    warning = listing.emulation_warning(the_plan, native)
    if warning:
        print(warning, file=sys.stderr)
    return result


def this_machine() -> frozenset[str]:
    """The OCI architectures this machine runs without QEMU (none known: an unknown kernel)."""
    try:
        return listing.host_architectures(from_oci("linux", host.machine()).architecture)
    except InputError:
        return frozenset()
