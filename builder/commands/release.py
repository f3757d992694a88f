"""Stage release: every stage in one command, from versions to published tags (`invoke release`).

generate check → build and push → publish → sign (with --sign-key) → summary pages, stopping
at the first stage that fails, so a tag is never published over per-arch images that did not
all build (unless ``allow_lagging``: then the platforms whose jobs failed keep the tag's
current members, and the release still exits 1), and never built from Dockerfiles that differ
from the committed tree.
Publish lists the digests this build pushed or found unchanged (`builder.publish.rules`), not
whatever the per-arch tags hold by then. Each stage is the one its own command runs; its
result adds itself to the release's report.

The stages hand each other values: the versions file is loaded and the version resolved once,
the plan made once (build runs its jobs, publish reads and hashes its members), and the build's
results go to publish as the images they vouch for (`builder.publish.rules.verified_builds`),
the same values `invoke publish --from-report` reads from a build's report. With --sign-key,
each image the build pushes and its attestation manifest are signed as its job ends, while
the other jobs build and publish runs; the sign stage signs the indexes and what else they
list, and waits for all of it.
"""
from __future__ import annotations

import sys
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TextIO

from builder.attest import signing
from builder.commands import build, generate, publish, sign, summary
from builder.farm.results import BuildRun, Interrupted
from builder.farm.runner import Hooks
from builder.model import naming
from builder.model import versions
from builder.model.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BuilderError
from builder.model.platforms import platform as parse_platform
from builder.model.report import Report, StageResult, Status
from builder.model.streams import null
from builder.model.tags import tag_groups
from builder.options import DEFAULT_LOGS, DEFAULT_PAGES, DEFAULT_VERSIONS
from builder.plan.plan import Plan
from builder.plan.plan import plan as make_plan
from builder.publish.rules import verified_builds
from builder.publish.writer import registry_host
from builder.registry.client import DEFAULT_CONCURRENCY, Registries, RegistryClient
from builder.report import write as html_report


@dataclass(frozen=True)
class ReleaseOptions:
    """`invoke release`'s options."""
    version: str
    registry: str
    variants: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    builders: str | None = None
    versions: str = DEFAULT_VERSIONS
    templates: str | None = None
    out: str = DEFAULT_PAGES  # the summary pages' and the HTML report's directory
    report: str | None = None
    oci: bool = False
    arch_namespace: bool = False
    allow_missing: bool = False
    allow_lagging: bool = False  # publish past failed jobs: their platforms keep the tags' members
    force: bool = False
    nocache: bool = False
    logs: str = DEFAULT_LOGS
    dry_run: bool = False
    ca_bundle: str | None = None
    registry_concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per registry, all stages
    attest: bool = False  # each image's SBOM and provenance, in the tags' OCI indexes
    sign_key: str | None = None  # cosign's private key: sign images, indexes, attestations


@dataclass(frozen=True)
class ReleaseResult:
    report: Report
    exit_code: int

    def add_to(self, report: Report) -> None:
        """Every stage's entry, job, tag and page of this release."""
        report.stages.update(self.report.stages)
        report.jobs += self.report.jobs
        report.tags += self.report.tags
        report.summaries += self.report.summaries


def run(options: ReleaseOptions, out: TextIO) -> ReleaseResult:
    """Release one version; the report says which stage stopped it, and is written also when
    an error stops a stage midway."""
    registry = naming.check_registry(options.registry.rstrip("/"))  # before the report names it
    # What can be checked of the key is, now; its password opens it while the release loads,
    # plans and probes, before anything is built (`sign.BuildSigning.ready`).
    key = signing.open_key(options.sign_key) if options.sign_key else None
    family = versions.load(options.versions, options.templates)
    wanted = family.version(options.version)
    report = Report("release", wanted.full, family.repository, registry)
    report.write(options.report, None)
    try:
        code = _stages(report, wanted, family, options, registry, out, key)
    except (BuilderError, KeyboardInterrupt) as error:
        # An error that stops a stage midway (bad builders file, a registry refusing a write, a
        # page that cannot be fetched) still gets its report: which stage, and why.
        interrupted = isinstance(error, KeyboardInterrupt)
        if isinstance(error, Interrupted):
            error.run.add_to(report)  # the build stage, interrupted, with what each job came to
        else:
            report.stage(report.running or "generate", Status.FAILED,
                         reason="interrupted" if interrupted else str(error))
        _save(report, options, EXIT_INTERRUPTED if interrupted else error.exit_code)
        raise  # the task prints the one error line
    _save(report, options, code)
    if report.stopped_at and list(report.stages)[-1] != report.stopped_at:
        print(f"release went on past the failed stage {report.stopped_at!r} (--allow-lagging)",
              file=sys.stderr)
    elif report.stopped_at:
        print(f"release stopped at stage {report.stopped_at!r}", file=sys.stderr)
    return ReleaseResult(report, code)


def _save(report: Report, options: ReleaseOptions, code: int) -> None:
    """The JSON report (--report) and the page, <out>/<repository>/index.html. A dry run
    writes no page, as it writes nothing else, and neither does a release that generate
    --check stopped: it built nothing, and leaves no out/ behind."""
    past_generate = "build" in report.stages
    html_report.save(report, code, json_path=options.report,
                     html_dir=options.out if past_generate and not options.dry_run else None)


def _begin(report: Report, stage: str, out: TextIO, heading: str) -> None:
    report.begin(stage)
    print(f"\n== {heading}", file=out, flush=True)


def _went_through(report: Report, result: StageResult) -> bool:
    result.add_to(report)
    return result.exit_code == EXIT_OK


def _stages(report: Report, wanted: versions.Version, family: versions.Family,
            options: ReleaseOptions, registry: str, out: TextIO,
            key: Future | None) -> int:
    # One client per registry for every stage: one pool, one limit, and one cache, so what the
    # build stage's skip check read serves publish and the pages.
    registries = Registries(
        target=registry, concurrency=options.registry_concurrency,
        ca_bundles={registry_host(registry, family.repository): options.ca_bundle}
        if options.ca_bundle else None)
    _begin(report, "generate", out, "generate --check")
    generated = generate.run(generate.GenerateOptions(check=True), null(), family=family)
    for problem in generated.problems:
        print(f"stale: {generated.out_dir / problem}", file=out)
    if not _went_through(report, generated):
        return EXIT_FAILED

    client = registries.client(registry_host(registry, family.repository),
                               ca_bundle=options.ca_bundle)
    # Each job's image and attestation manifest are signed as the job ends, while the others
    # build; whatever is still signing when a later stage fails is stopped.
    with (sign.BuildSigning(client, key, naming.target_reference(
            registry, family.repository, "latest")) if key else nullcontext()) as signer:
        return _build_onwards(report, wanted, family, options, registry, registries, out,
                              Signer(client, signer))


@dataclass(frozen=True)
class Signer:
    """The release's signing: the target's client, and the build's signing (None: no
    --sign-key)."""
    client: RegistryClient
    early: sign.BuildSigning | None


def _build_onwards(report: Report, wanted: versions.Version, family: versions.Family,
                   options: ReleaseOptions, registry: str, registries: Registries,
                   out: TextIO, signer: Signer) -> int:
    _begin(report, "build", out, "build and push")
    the_plan, built = _build(wanted, family, options, registry, registries, out,
                             signer.early.hooks() if signer.early else Hooks())
    went_through = _went_through(report, built)
    if options.dry_run:
        if signer.early:
            signer.early.ready()  # a dry run, too, says that the password does not open the key
        _begin(report, "publish", out, "publish (planned)")
        platforms = tuple(parse_platform(name) for name in options.platforms)
        for tag, members in tag_groups(family, wanted, options.variants, platforms).items():
            print(f"  {tag}: {', '.join(v.name for v in members)}", file=out)
        return EXIT_OK
    if not went_through and not options.allow_lagging:
        report.stages["build"]["reason"] += "; nothing was published"
        return EXIT_FAILED
    return _publish_onwards(report, the_plan, built, wanted, options, registry, registries,
                            signer, out)


def _publish_onwards(report: Report, the_plan: Plan, built: BuildRun,
                     wanted: versions.Version, options: ReleaseOptions, registry: str,
                     registries: Registries,
                     signer: Signer, out: TextIO) -> int:
    """Publish, sign (past what the build stage's signing has), the summary pages."""
    _begin(report, "publish", out, "publish")
    published = publish.stage(the_plan, publish.PublishOptions(
        version=wanted.full, registry=registry, oci=options.oci,
        allow_missing=options.allow_missing, allow_lagging=options.allow_lagging,
        arch_namespace=options.arch_namespace, ca_bundle=options.ca_bundle,
        variants=options.variants, platforms=options.platforms, out=None,
        attest=options.attest), out,
        verified=verified_builds(built.results), registries=registries,
        attestations={r.digest: r.attestation for r in built.results if r.attestation})
    if not _went_through(report, published):
        return EXIT_FAILED
    if signer.early:
        _begin(report, "sign", out, "sign (cosign's format, offline)")
        _went_through(report, sign.sign_published(
            signer.client, {t.reference: t.digest for t in published.tags if t.digest},
            signer.early.key, out, early=signer.early.signing))

    _begin(report, "summary", out, "summary pages")
    pages = summary.run(summary.SummaryOptions(
        tuple(t.reference for t in published.tags), options.out, options.ca_bundle,
        digests={t.reference: t.digest for t in published.tags if t.digest}),
        null(), registries=registries)
    for _, path in pages.pages:
        print(f"  {path}", file=out)
    # A tag this run published has no page only when it was deleted since: the release failed.
    # Without a build that went through, --allow-lagging published past failed jobs: failed too.
    went_through = built.exit_code == EXIT_OK
    return EXIT_OK if _went_through(report, pages) and went_through else EXIT_FAILED


def _build(wanted: versions.Version, family: versions.Family, options: ReleaseOptions,
           registry: str, registries: Registries, out: TextIO,
           hooks: Hooks) -> tuple[Plan, BuildRun]:
    """The release's one plan, and its build stage's run: every job pushed, and read back
    into the run's cache for publish and the pages; `hooks`: the signing's."""
    build_options = build.BuildOptions(
        version=wanted.full, variants=options.variants, platforms=options.platforms,
        registry=registry, push=True, builders=options.builders, force=options.force,
        nocache=options.nocache, dry_run=options.dry_run, logs=options.logs,
        arch_namespace=options.arch_namespace, attest=options.attest)
    the_plan = make_plan(family, wanted, options.variants, options.platforms,
                         builders=build.load_builders(build_options), registry=registry,
                         arch_namespace=options.arch_namespace)
    return the_plan, build.stage(the_plan, build_options, out, registries=registries,
                                 read_back=True, hooks=hooks)
