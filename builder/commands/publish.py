"""`invoke publish`: every tag's list of a version's per-arch images, a line per tag, the report.

The publishing core is `builder.publish` (the rules, the lists, the writer); this is the edge
that gives it what it needs: the plan's members and the build hash each gets now
(`builder.plan.identity`, its bases pinned through the run's registries), and the images a build
vouches for: this run's, handed over as values by a release, or read from a build's report.
"""
from __future__ import annotations

import functools
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TextIO

from builder.farm import engines
from builder.model import versions
from builder.generate.library import committed
from builder.model.errors import EXIT_FAILED, EXIT_OK, BuilderError
from builder.model.platforms import platform as parse_platform
from builder.model.report import Report, Status
from builder.model.report import read as read_report
from builder.model.tags import tag_groups
from builder.model.versions import Version
from builder.options import DEFAULT_PAGES, DEFAULT_VERSIONS
from builder.plan.identity import parent_reference, pin_bases, prepare
from builder.plan.plan import Plan
from builder.plan.plan import plan as make_plan
from builder.publish.annotations import Origin
from builder.publish.lists import TagResult
from builder.publish.rules import HashNow, Verified, merge_verified, verified_from_report
from builder.publish.writer import publish, registry_host
from builder.registry.client import DEFAULT_CONCURRENCY, Registries
from builder.registry.pins import BasePins
from builder.report import write as html_report


@dataclass(frozen=True)
class PublishOptions:
    """`invoke publish`'s options; `release` fills them from its own."""
    version: str
    registry: str
    versions: str = DEFAULT_VERSIONS
    oci: bool = False
    allow_missing: bool = False
    allow_lagging: bool = False  # a member this run lacks keeps the tag's current one
    arch_namespace: bool = False
    dry_run: bool = False
    ca_bundle: str | None = None
    report: str | None = None
    variants: tuple[str, ...] = ()  # only the tags these variants alone make up
    platforms: tuple[str, ...] = ()  # these platforms, and the others only where current
    builders: str | None = None  # its base and source mirrors go into the plan's build hashes
    from_report: tuple[str, ...] = ()  # builds' reports: the images those builds vouch for
    registry_concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per registry
    out: str | None = DEFAULT_PAGES  # the HTML report: <out>/<repository>/index.html; None: none
    attest: bool = False  # OCI indexes listing the images' attestation manifests


@dataclass(frozen=True)
class PublishResult:
    version: Version
    registry: str  # as given, without a trailing slash
    tags: tuple[TagResult, ...]

    @property
    def failed(self) -> list[str]:
        return [r.tag for r in self.tags if r.status in (Status.FAILED, Status.KEPT)
                or r.split_from]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_OK

    def add_to(self, report: Report) -> None:
        report.tags = [r.as_dict() for r in self.tags]
        if self.failed:
            report.stage("publish", Status.FAILED, failed=self.failed,
                         reason=f"{len(self.failed)} of {len(self.tags)} tags not published")
        else:
            report.stage("publish", Status.OK, **Counter(r.status.value for r in self.tags))


def run(options: PublishOptions, out: TextIO) -> PublishResult:
    """`invoke publish`: the images `--from-report`'s build vouches for, else only those whose
    build hash is the plan's."""
    registry = options.registry.rstrip("/")
    Report("publish", options.version, registry=registry).write(options.report, None)
    family = versions.load(options.versions)
    wanted = family.version(options.version)
    for name in options.variants:
        wanted.variant(name)  # an unknown name is bad input, before anything is read
    for name in options.platforms:
        parse_platform(name)
    the_plan = make_plan(family, wanted, registry=registry, arch_namespace=options.arch_namespace,
                         builders=engines.load(options.builders, require_engine=False))
    references = {job.key: str(job.image) for job in the_plan.members}
    verified = merge_verified([
        (path, verified_from_report(read_report(path), path, wanted.full, registry, references))
        for path in options.from_report])
    return stage(the_plan, options, out, verified=verified,
                 registries=Registries(target=registry, concurrency=options.registry_concurrency),
                 attestations=reported_attestations(options.from_report))


def reported_attestations(paths: Sequence[str]) -> dict[str, dict]:
    """{image digest: attestation descriptor} of the jobs of builds' reports that pushed one."""
    found = {}
    for path in paths:
        document = read_report(path)
        for job in document.get("jobs", []) if isinstance(document, Mapping) else []:
            entry = job.get("attestation") if isinstance(job, Mapping) else None
            if isinstance(entry, Mapping) and isinstance(job.get("digest"), str):
                found[job["digest"]] = dict(entry)
    return found


def stage(plan: Plan, options: PublishOptions, out: TextIO, *, verified: Mapping[str, Verified],
          registries: Registries, attestations: Mapping[str, Mapping] | None = None
          ) -> PublishResult:
    """The publish stage of a plan made already (`plan.members`: every member, for its reference
    and its hash). `verified`: the images the build vouches for; `registries`: the run's;
    `attestations`: the attestation manifests the build pushed, by image digest."""
    family, wanted, registry = plan.family, plan.version, options.registry.rstrip("/")
    platforms = tuple(parse_platform(name) for name in options.platforms)
    if options.variants or platforms:
        kept = (f", lists of {', '.join(p.name for p in platforms)} and of the other platforms "
                "already published and current") if platforms else ""
        print(f"publishing the tags of {', '.join(options.variants) or 'every variant'}{kept}",
              file=out)
    client = registries.client(registry_host(registry, family.repository),
                               ca_bundle=options.ca_bundle)
    every = tag_groups(family, wanted, options.variants)
    groups = {tag: every[tag] for tag in tag_groups(family, wanted, options.variants, platforms)}
    optional = frozenset(p.name for v in wanted.variants for p in v.platforms) \
        - {p.name for p in platforms} if platforms else frozenset()
    pins = BasePins(registries, plan.builders.base_mirror)
    hashes = hash_now(plan, registries, pins)
    results = publish(client, registry, family.repository, wanted, groups, hash_now=hashes,
                      origin=origins(plan, pins, verified, hashes),
                      parents={job.key: job.parent for job in plan.members if job.parent},
                      verified=verified, optional=optional,
                      oci=options.oci, allow_missing=options.allow_missing,
                      allow_lagging=options.allow_lagging, arch_namespace_layout=options.arch_namespace, dry_run=options.dry_run,
                      attestations=dict(attestations or {}) if options.attest else None)
    result = PublishResult(wanted, registry, tuple(results))
    _tell(result, options, family.repository, out)
    return result


def _tell(result: PublishResult, options: PublishOptions, repository: str, out: TextIO) -> None:
    """Each tag's line and warnings, the reports (a dry run writes no page), and on stderr the
    tags not published."""
    for tag in result.tags:
        _show(tag, out)
    if options.report or options.out:
        report = Report("publish", result.version.full, repository, result.registry)
        result.add_to(report)
        html_report.save(report, result.exit_code, json_path=options.report,
                         html_dir=None if options.dry_run else options.out)
    if result.failed:
        print(f"error: {len(result.failed)} of {len(result.tags)} tags not published: "
              f"{', '.join(result.failed)}", file=sys.stderr)


def _show(tag: TagResult, out: TextIO) -> None:
    """The tag's line, and on stderr what it was published without, or with from before."""
    print(tag.line(), file=out)
    if tag.status in (Status.FAILED, Status.KEPT):
        return
    if tag.missing:
        done = "would be published" if tag.status is Status.PLANNED else "published"
        print(f"WARNING: {tag.reference} {done} WITHOUT {', '.join(tag.missing)} "
              "(--allow-missing)", file=sys.stderr)
    if tag.lagging:
        print(f"WARNING: {tag.reference} keeps lagging members: {', '.join(tag.lagging)} "
              "(--allow-lagging)", file=sys.stderr)


def hash_now(plan: Plan, registries: Registries, pins: BasePins | None = None) -> HashNow:
    """The build hash a member of `plan` gets now, without an engine: its bases pinned as a
    build pins them (with `pins`, else through the run's `registries`), its parent (if any) at
    the given registry digest. Publish compares it with the label of an image this run did not
    build."""
    members = {job.key: job for job in plan.members}
    pins = pins or BasePins(registries, plan.builders.base_mirror)

    def hash_of(key: str, parent_digest: str | None) -> str:
        job = members[key]
        parent = parent_reference(str(members[job.parent].image), parent_digest) \
            if job.parent else None
        return prepare(job, parent, pin_bases(job, pins.pin), plan.builders.mirrors).build_hash

    return hash_of


def origins(plan: Plan, pins: BasePins, verified: Mapping[str, Verified],
            hashes: HashNow) -> Callable[[str], Origin]:
    """Where a member of `plan` comes from, for its index entry's annotations: the versions
    file's `git-repo` and `image-url`, the commit of its Dockerfile's directory (git, in the
    checkout holding the versions file; none when that directory has uncommitted changes), and
    its variant's `from` pinned as a build pins it (a member built FROM another variant of the
    version gets its parent's digest from publish). An image of this run's build (`verified`)
    gets that digest only when its build hash is the one `hashes` gives now: a base that moved
    since its build is not the one it was built FROM. Any other member publish lists has the
    hash of now already."""
    family = plan.family
    members = {job.key: job for job in plan.members}
    commit_of = functools.lru_cache(maxsize=None)(
        lambda directory: committed(family.source.parent, directory))

    def origin(key: str) -> Origin:
        job = members[key]
        commit, directory = commit_of(job.dockerfile.parent.as_posix()) or (None, "")
        digest = None
        try:
            if not job.parent and (key not in verified
                                   or hashes(key, None) == verified[key].build_hash):
                digest = pins.pin(job.variant.base_image, job.platform).rpartition("@")[2]
        except BuilderError:
            pass  # not known now: the entry goes without it, as upstream's would
        return Origin(job.version.full, family.extra.get("git-repo"), commit, directory,
                      family.extra.get("image-url"), job.variant.base_image, digest)

    return origin
