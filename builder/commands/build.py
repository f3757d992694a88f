"""`invoke build`: plan a version's jobs, run them on the engines, write the report.

The plan is `builder.plan.plan`'s, the run `builder.farm.runner`'s; this is the edge that shows
them: the plan, the probes' findings, the progress, the table, and each failure on stderr.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.farm import engines
from builder.model.builders import Builders
from builder.farm.progress import Progress
from builder.farm.results import BuildRun, Interrupted, grouped
from builder.farm.runner import Hooks, Runner
from builder.model import versions
from builder.model.errors import EXIT_INTERRUPTED, InputError
from builder.model.naming import check_registry
from builder.model.report import Report, Status
from builder.commands.plan import this_machine
from builder.options import DEFAULT_LOGS, DEFAULT_PAGES, DEFAULT_VERSIONS
from builder.plan.listing import emulation_warning
from builder.plan.plan import Plan
from builder.plan.plan import plan as make_plan
from builder.registry.client import DEFAULT_CONCURRENCY, Registries
from builder.report import write as html_report


@dataclass(frozen=True)
class BuildOptions:
    """`invoke build`'s options; `release` fills them from its own."""
    version: str
    variants: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    push: bool = False
    builders: str | None = None
    force: bool = False
    nocache: bool = False
    dry_run: bool = False
    logs: str = DEFAULT_LOGS
    versions: str = DEFAULT_VERSIONS
    arch_namespace: bool = False
    report: str | None = None
    registry_concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per registry
    out: str | None = DEFAULT_PAGES  # the HTML report: <out>/<repository>/index.html; None: none
    attest: bool = False  # push each image's SBOM and provenance beside it


def run(options: BuildOptions, out: TextIO) -> BuildRun:
    """`invoke build`: print the plan (dry-run: only that), run it, write the report and the
    page (`--out`)."""
    check_push_target(options.push, options.registry)  # before any file is read: nothing was done
    report = Report("build", options.version, registry=options.registry)
    report.write(options.report, None)
    try:
        family = versions.load(options.versions)
        the_plan = make_plan(family, options.version, tuple(options.variants),
                             tuple(options.platforms), builders=load_builders(options),
                             registry=options.registry, arch_namespace=options.arch_namespace)
        report.version, report.repository = the_plan.version.full, the_plan.family.repository
        result = stage(the_plan, options, out, registries=Registries(
            concurrency=options.registry_concurrency, target=options.registry))
    except KeyboardInterrupt as error:
        # Interrupted while planning, or while jobs ran: the report says so, with each job.
        if isinstance(error, Interrupted):
            error.run.add_to(report)
        else:
            report.stage("build", Status.FAILED, reason="interrupted")
        html_report.save(report, EXIT_INTERRUPTED, json_path=options.report, html_dir=options.out)
        raise
    result.add_to(report)
    # A dry run's report is the plan (no engine took a job): it gets no page, as publish's and
    # release's dry runs get none.
    html_report.save(report, result.exit_code, json_path=options.report,
                     html_dir=None if options.dry_run else options.out)
    return result


def load_builders(options: BuildOptions) -> Builders:
    """The builders file the options name; a dry run needs no engine."""
    return engines.load(options.builders, require_engine=not options.dry_run)


def stage(plan: Plan, options: BuildOptions, out: TextIO, *, registries: Registries,
          read_back: bool = False, hooks: Hooks = Hooks()) -> BuildRun:
    """The build stage of a plan made already: print it (dry-run: only that), run it.
    `registries`: the run's registry clients, shared with a release's later stages;
    `read_back`: read each pushed image into their cache for those stages; `hooks`: what a
    release does once the engines are probed, and as each job ends."""
    native = this_machine()
    warning = emulation_warning(plan, native)
    if warning:
        print(warning, file=sys.stderr)
    if options.dry_run:
        print(plan.describe(), file=out)
        return BuildRun(plan, [], planned=True, native=native)
    return run_plan(plan, push=options.push, force=options.force, nocache=options.nocache,
                    logs=options.logs, out=out, registries=registries, read_back=read_back,
                    attest=options.attest, hooks=hooks)


def run_plan(plan: Plan, *, out: TextIO, push: bool = False, force: bool = False,
             nocache: bool = False, logs: str | Path = DEFAULT_LOGS,
             registries: Registries | None = None, read_back: bool = False,
             attest: bool = False, hooks: Hooks = Hooks()) -> BuildRun:
    """Check the registries and probe the engines, then run every job of `plan`, showing the
    plan, the probes' findings, progress and then the table on `out`; failures are in the
    results, and each is also named on stderr with its log. A registry that does not answer
    is the one line of its HostUnreachable, and the plan is not shown: none of it will run."""
    check_push_target(push, plan.registry)
    runner = Runner(plan, push=push, force=force, nocache=nocache, logs=Path(logs),
                    registries=registries, read_back=read_back, attest=attest, hooks=hooks)
    health = runner.probe(answered=lambda: print(plan.describe(), file=out, flush=True))
    for line in health.engine_lines() + health.lines():
        print(line, file=out, flush=True)
    hooks.ready()
    # The engine column shows the pool until a job takes a slot on one of its engines.
    progress = Progress([(j.key, "|".join(j.pool)) for j in plan.jobs]
                        + [(s.key, "-") for s in plan.skipped], out=out)
    try:
        result = runner.run(progress)
    finally:
        progress.close()
    print(result.table(), file=progress.out)
    for line in grouped(result.failures, "failed", logs=True) \
            + grouped(result.unserved, "skipped", logs=False):
        print(line, file=sys.stderr)
    if result.interrupted:
        raise Interrupted(result)
    return result


def check_push_target(push: bool, registry: str | None) -> None:
    if registry:
        check_registry(registry)
    if push and not registry:
        raise InputError("--push needs --registry: where should the images go?", field="push")
