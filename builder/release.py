"""Every stage in one command, from versions to published tags (`invoke release`).

generate check → build and push → publish → summary pages, stopping at the first stage
that fails, so a tag is never published over per-arch images that did not all build, and
never built from Dockerfiles that differ from the committed tree.
"""
from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from . import build, engines, publish, render, summary, versions
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BuilderError
from .plan import plan as make_plan
from .publish import Status
from .registry import ImageRef
from .report import Report
from .tags import tag_groups

_PAGE_WORKERS = 4  # pages fetch concurrently themselves; a few at once keeps the registry calm


def run(version: str, registry: str, *, variants=(), platforms=(), builders: str | None = None,
        versions_path: str = "versions.yaml", templates: str | None = None,
        out_dir: str = "out", report_path: str | None = None, oci: bool = False,
        arch_namespace: bool = False, allow_missing: bool = False, force: bool = False,
        nocache: bool = False, logs: str = "logs", dry_run: bool = False,
        ca_bundle: str | None = None, out: TextIO | None = None) -> int:
    """Release one version; returns the exit code (the report says which stage stopped it)."""
    out = out or sys.stdout
    registry = registry.rstrip("/")
    family = versions.load(versions_path, templates)
    wanted = family.version(version)
    report = Report("release", wanted.full, family.repository, registry)
    try:
        code = _stages(report, family, wanted, registry, variants=variants, platforms=platforms,
                       builders=builders, out_dir=out_dir, oci=oci, arch_namespace=arch_namespace,
                       allow_missing=allow_missing, force=force, nocache=nocache, logs=logs,
                       dry_run=dry_run, ca_bundle=ca_bundle, out=out)
    except (BuilderError, KeyboardInterrupt) as error:
        # An error that stops a stage midway (bad builders file, a registry refusing a write, a
        # page that cannot be fetched) still gets its report: which stage, and why.
        interrupted = isinstance(error, KeyboardInterrupt)
        report.stage(report.running or "generate", "failed",
                     reason="interrupted" if interrupted else str(error))
        report.write(report_path, EXIT_INTERRUPTED if interrupted else error.exit_code)
        raise  # the task prints the one error line
    report.write(report_path, code)
    if report.stopped_at:
        print(f"release stopped at stage {report.stopped_at!r}", file=sys.stderr)
    return code


def _begin(report: Report, stage: str, out: TextIO, heading: str) -> None:
    report.running = stage
    print(f"\n== {heading}", file=out, flush=True)


def _stages(report: Report, family, wanted, registry: str, *, variants, platforms, builders,
            out_dir, oci, arch_namespace, allow_missing, force, nocache, logs, dry_run,
            ca_bundle, out: TextIO) -> int:
    _begin(report, "generate", out, "generate --check")
    rendered = render.render(family)
    problems = render.check(family, family.source.parent, rendered)
    for problem in problems:
        print(f"stale: {family.source.parent / problem}", file=out)
    if problems:
        report.stage("generate", "failed", problems=problems,
                     reason="committed Dockerfiles differ from the templates; run `invoke generate`")
        return EXIT_FAILED
    report.stage("generate", "ok", dockerfiles=len(rendered))

    _begin(report, "build", out, "build and push")
    the_plan = make_plan(family, wanted, tuple(variants), tuple(platforms),
                         builders=engines.load(builders, require_engine=not dry_run),
                         registry=registry, arch_namespace=arch_namespace)
    print(the_plan.describe(), file=out)
    groups = tag_groups(family, wanted)
    if dry_run:
        report.stage("build", "planned", jobs=len(the_plan.jobs), skipped=len(the_plan.skipped))
        _begin(report, "publish", out, "publish (planned)")
        for tag, members in groups.items():
            print(f"  {tag}: {', '.join(v.name for v in members)}", file=out)
        return EXIT_OK
    built = build.run(the_plan, push=True, force=force, nocache=nocache, logs=logs, out=out)
    report.jobs = [r.as_dict() for r in built.results]
    if built.failures:
        report.stage("build", "failed", failed=[f.key for f in built.failures],
                     reason=f"{len(built.failures)} job(s) failed; nothing was published")
        return EXIT_FAILED
    report.stage("build", "ok", **Counter(r.status for r in built.results))

    _begin(report, "publish", out, "publish")
    client = publish.registry_client(registry, family.repository, ca_bundle=ca_bundle)
    results = publish.publish(client, registry, family.repository, wanted, groups, oci=oci,
                              allow_missing=allow_missing, arch_namespace_layout=arch_namespace)
    report.tags = [r.as_dict() for r in results]
    for result in results:
        print(result.line(), file=out)
    failed = [r.tag for r in results if r.status is Status.FAILED]
    if failed:
        report.stage("publish", "failed", failed=failed,
                     reason=f"{len(failed)} of {len(results)} tags not published")
        return EXIT_FAILED
    report.stage("publish", "ok", **Counter(r.status.value for r in results))

    _begin(report, "summary", out, "summary pages")
    refs = [ImageRef.parse(r.reference) for r in results]
    with ThreadPoolExecutor(max_workers=_PAGE_WORKERS) as pool:
        pages = list(pool.map(lambda ref: summary.write_page(client, ref, out_dir), refs))
    for ref, path in zip(refs, pages):
        report.summaries.append({"tag": ref.tag, "reference": str(ref), "path": str(path)})
        print(f"  {path}", file=out)
    report.stage("summary", "ok", pages=len(pages))
    return EXIT_OK

