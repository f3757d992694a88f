"""Stage publish: the per-arch images of a version → one manifest list (or OCI index) per tag.

The build stage pushes every (variant, platform) image under the name ``naming.arch_reference``
gives; this stage finds them, reads each image's config for its platform fields, and writes,
for every tag and shared tag of the version, a list of exactly those images. The list's bytes
come from the pure core, `builder.publish_lists`.

- A tag is never partial: its list is written only when every (variant, platform) it needs is
  present, unless ``allow_missing`` says to publish what exists (and the output says so).
- With arch namespaces (``amd64/python:3.8.0-buster``, like the official images) the images are
  first copied into the target repository, because a registry rejects a list whose entries
  live in another repository: blobs by cross-repository mount, then the manifest by digest.
"""
from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Mapping, Sequence, TextIO

from . import versions
from .errors import EXIT_FAILED, EXIT_OK, BuilderError, InputError
from .naming import arch_reference, target_reference
from .platforms import Platform, platform as parse_platform
from .publish_lists import Member, TagResult, assemble
from .reference import FOREIGN_LAYER_TYPES, ImageRef, Manifest, sha256_digest
from .registry import DEFAULT_CONCURRENCY, NotFound, Registries, RegistryClient
from .report import Report, Status
from .tags import tag_groups
from .versions import Variant, Version

_WORKERS = 8


def registry_host(registry: str, repository: str) -> str:
    """The host of `registry` (which may carry a path: registry.example.com/team)."""
    try:
        return target_reference(registry, repository, "latest").registry
    except InputError as error:
        raise InputError(f"--registry {registry!r}: {error.message}", field="registry") from None


@dataclass(frozen=True)
class _Found:
    member: Member | None
    repository: str = ""  # where the member's manifest is
    problem: str = ""  # why there is no member
    missing: bool = False  # the image is absent (as opposed to wrong)


def publish(client: RegistryClient, registry: str, repository: str, version: Version,
            groups: Mapping[str, Sequence[Variant]], *, oci: bool = False,
            allow_missing: bool = False, arch_namespace_layout: bool = False,
            dry_run: bool = False) -> list[TagResult]:
    """Write the list of every tag in `groups` ({tag: variants}); one result per tag, in order."""
    needed = list(dict.fromkeys((variant, platform) for variants in groups.values()
                                for variant in variants for platform in variant.platforms))
    target = target_reference(registry, repository, "latest").repository

    def find(pair: tuple[Variant, Platform]) -> _Found:
        variant, platform = pair
        return _find(client, arch_reference(registry, repository, version, variant, platform,
                                            arch_namespace_layout=arch_namespace_layout), platform)

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        found = dict(zip(needed, pool.map(find, needed)))
        if not dry_run:
            _copy_in(client, pool, [f for f in found.values() if f.member], target)
        return list(pool.map(lambda item: _publish_tag(
            client, target_reference(registry, repository, item[0]), item[1], found,
            oci=oci, allow_missing=allow_missing, dry_run=dry_run), groups.items()))


def _find(client: RegistryClient, ref: ImageRef, platform: Platform) -> _Found:
    try:
        # The build stage read this image just now: only its digest is asked for again.
        manifest = client.resolve_platform(ref, platform, head_first=True)
    except NotFound:
        return _Found(None, problem=str(ref), missing=True)
    config = client.get_config(ref.repository, manifest)
    member = Member(manifest, config)
    try:
        found_platform = member.platform
    except BuilderError as error:
        return _Found(None, problem=f"{ref}: {error}")
    if not platform.matches(found_platform.os, found_platform.architecture,
                            found_platform.variant, found_platform.os_version):
        return _Found(None, problem=f"{ref} is {member.label}, not {platform.oci}"
                                    f"{' ' + platform.os_version if platform.os_version else ''}")
    return _Found(member, ref.repository)


def _copy_in(client: RegistryClient, pool: ThreadPoolExecutor, found: Sequence[_Found],
             target: str) -> None:
    """Make every member from another repository exist in `target`: mount its blobs, then PUT
    its manifest by digest. Each blob is mounted once: Distribution's filesystem storage
    answers DIGEST_INVALID when two mounts of one blob into one repository race."""
    foreign = {f.member.manifest.digest: f for f in found if f.repository != target}
    heads = pool.map(lambda digest: client.head_manifest(target, digest), foreign)
    absent = [f for f, head in zip(foreign.values(), heads) if head is None]
    blobs: dict[str, str] = {}
    for f in absent:
        document = f.member.manifest.json
        for blob in [document["config"]] + document.get("layers", []):
            if blob.get("mediaType") not in FOREIGN_LAYER_TYPES:
                blobs.setdefault(blob["digest"], f.repository)
    mounted = pool.map(lambda item: client.mount_blob(target, *item), blobs.items())
    refused = [f"{digest} from {source}" for (digest, source), ok in zip(blobs.items(), mounted)
               if not ok]
    if refused:
        raise BuilderError(f"registry {client.registry} would not mount {', '.join(refused[:3])} "
                           f"into {target}; push those per-arch images again")
    list(pool.map(lambda f: client.put_manifest(target, f.member.manifest.digest,
                                                f.member.manifest.body,
                                                f.member.manifest.media_type), absent))


def _publish_tag(client: RegistryClient, ref: ImageRef, variants: Sequence[Variant],
                 found: Mapping[tuple[Variant, Platform], _Found], *, oci: bool,
                 allow_missing: bool, dry_run: bool) -> TagResult:
    results = [found[(variant, platform)] for variant in variants for platform in variant.platforms]
    wrong = [r.problem for r in results if r.member is None and not r.missing]
    missing = tuple(r.problem for r in results if r.missing)
    members = [r.member for r in results if r.member is not None]
    if wrong:
        return TagResult(ref.tag, str(ref), Status.FAILED, missing=missing,
                         reason="; ".join(wrong) + "; the tag is left as it was")
    if missing and (not allow_missing or not members):
        return TagResult(ref.tag, str(ref), Status.FAILED, missing=missing,
                         reason=f"missing {', '.join(missing)}; the tag is left as it was "
                                "(push them, or pass --allow-missing to publish the rest)")
    try:
        body, media_type = assemble(members, oci=oci)
    except BuilderError as error:
        return TagResult(ref.tag, str(ref), Status.FAILED, reason=str(error))
    digest = sha256_digest(body)
    labels = tuple(m.label for m in sorted(members, key=lambda m: m.platform.sort_key()))
    result = TagResult(ref.tag, str(ref), Status.UNCHANGED, digest, media_type, labels, missing)
    current = client.head_manifest(ref.repository, ref.tag)
    if current and current.digest == digest:
        client.remember(ref.repository, Manifest(media_type, digest, body))  # the pages read it
        return result
    if dry_run:
        return replace(result, status=Status.PLANNED)
    client.put_manifest(ref.repository, ref.tag, body, media_type)
    return replace(result, status=Status.WRITTEN)


@dataclass(frozen=True)
class PublishOptions:
    """`invoke publish`'s options; `release` fills them from its own."""
    version: str
    registry: str
    versions: str = "versions.yaml"
    oci: bool = False
    allow_missing: bool = False
    arch_namespace: bool = False
    dry_run: bool = False
    ca_bundle: str | None = None
    report: str | None = None
    variants: tuple[str, ...] = ()  # only the tags these variants alone make up
    platforms: tuple[str, ...] = ()  # lists of these platforms only (official or OCI names)
    registry_concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per registry


@dataclass(frozen=True)
class PublishResult:
    version: Version
    registry: str  # as given, without a trailing slash
    tags: tuple[TagResult, ...]

    @property
    def failed(self) -> list[str]:
        return [r.tag for r in self.tags if r.status is Status.FAILED]

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


def run(options: PublishOptions, out: TextIO | None = None, *,
        family: versions.Family | None = None,
        registries: Registries | None = None) -> PublishResult:
    """`invoke publish`: every tag's list, a line per tag on `out`, the report; `family` is the
    loaded versions file and `registries` the run's clients when the caller has them already."""
    out = out or sys.stdout
    family = family or versions.load(options.versions)
    wanted = family.version(options.version)
    registry = options.registry.rstrip("/")
    for name in options.variants:
        wanted.variant(name)  # an unknown name is bad input, before anything is read
    platforms = tuple(parse_platform(name) for name in options.platforms)
    if options.variants or platforms:
        print(f"publishing the tags of {', '.join(options.variants) or 'every variant'}"
              f"{', lists of ' + ', '.join(p.name for p in platforms) + ' only' if platforms else ''}",
              file=out)
    registries = registries or Registries(concurrency=options.registry_concurrency)
    client = registries.client(registry_host(registry, family.repository),
                               ca_bundle=options.ca_bundle)
    groups = tag_groups(family, wanted, options.variants, platforms)
    results = publish(client, registry, family.repository, wanted, groups,
                      oci=options.oci, allow_missing=options.allow_missing,
                      arch_namespace_layout=options.arch_namespace, dry_run=options.dry_run)
    result = PublishResult(wanted, registry, tuple(results))
    for tag in results:
        print(tag.line(), file=out)
        if tag.missing and tag.status is not Status.FAILED:
            done = "would be published" if tag.status is Status.PLANNED else "published"
            print(f"WARNING: {tag.reference} {done} WITHOUT {', '.join(tag.missing)} "
                  "(--allow-missing)", file=sys.stderr)
    if options.report:
        report = Report("publish", wanted.full, family.repository, registry)
        result.add_to(report)
        report.write(options.report, result.exit_code)
    if result.failed:
        print(f"error: {len(result.failed)} of {len(results)} tags not published: "
              f"{', '.join(result.failed)}", file=sys.stderr)
    return result
