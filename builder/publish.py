"""Stage 3a: the per-arch images of a version → one manifest list (or OCI index) per tag.

The build stage pushes every (variant, platform) image under the name ``arch_reference`` gives;
this stage finds them, reads each image's config for its platform fields, and writes, for every
tag and shared tag of the version, a list of exactly those images.

- The core is pure: ``assemble`` turns manifests and configs into the list's bytes, the same
  bytes for the same images, so a re-run compares digests and writes nothing.
- A tag is never partial: its list is written only when every (variant, platform) it needs is
  present, unless ``allow_missing`` says to publish what exists (and the output says so).
- With arch namespaces (``amd64/python:3.8.0-buster``, like the official images) the images are
  first copied into the target repository, because a registry rejects a list whose entries
  live in another repository: blobs by cross-repository mount, then the manifest by digest.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Callable, Mapping, Sequence

from .errors import EXIT_FAILED, EXIT_OK, BuilderError, InputError
from .platforms import Platform, from_oci
from .report import Report
from .registry import (DOCKER_LIST, FOREIGN_LAYER_TYPES, OCI_INDEX, ImageRef, Manifest,
                       NotFound, RegistryClient, sha256_digest)
from .versions import Variant, Version

# Official-images namespaces that differ from the platform's name.
_NAMESPACES = {"windows-amd64": "winamd64"}
_WORKERS = 8


def arch_namespace(platform: Platform) -> str:
    """The per-arch namespace of `platform`: ``arm64v8``, ``winamd64``."""
    return _NAMESPACES.get(platform.name, platform.name)


def arch_reference(registry: str, repository: str, version: Version, variant: Variant,
                   platform: Platform, *, arch_namespace_layout: bool = False) -> ImageRef:
    """Where the build stage pushes, and this stage finds, one per-arch image.

    Default: an arch-suffixed tag in the target repository,
    ``<registry>/<repository>:<version>-<variant>-<platform>``
    (``127.0.0.1:5000/python:3.8.0-buster-arm64v8``). With `arch_namespace_layout`:
    ``<registry>/<namespace>/<repository>:<version>-<variant>``
    (``127.0.0.1:5000/arm64v8/python:3.8.0-buster``, Windows under ``winamd64``).
    `registry` is a host, optionally with a path (``registry.example.com/team``).
    """
    if arch_namespace_layout:
        return ImageRef.parse(f"{registry}/{arch_namespace(platform)}/{repository}:"
                              f"{version.full}-{variant.name}")
    return ImageRef.parse(f"{registry}/{repository}:{version.full}-{variant.name}-{platform.name}")


def target_reference(registry: str, repository: str, tag: str) -> ImageRef:
    """The published tag: ``<registry>/<repository>:<tag>``."""
    return ImageRef.parse(f"{registry}/{repository}:{tag}")


def registry_client(registry: str, repository: str, *,
                    ca_bundle: str | None = None) -> RegistryClient:
    """The client for the host of `registry` (which may carry a path: registry.example.com/team)."""
    try:
        host = target_reference(registry, repository, "latest").registry
    except InputError as error:
        raise InputError(f"--registry {registry!r}: {error.message}", field="registry") from None
    return RegistryClient(host, ca_bundle=ca_bundle)


# --- the pure core ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One per-arch image of a list: its exact manifest and its config."""
    manifest: Manifest
    config: Mapping

    @property
    def platform_fields(self) -> dict:
        return platform_fields(self.config)

    @property
    def platform(self) -> Platform:
        fields = self.platform_fields
        return from_oci(fields["os"], fields["architecture"],
                        fields.get("variant")).with_os_version(fields.get("os.version"))

    @property
    def label(self) -> str:
        """``linux/arm/v7``, ``windows/amd64 10.0.17763.805``: for output and reports."""
        fields = self.platform_fields
        return self.platform.oci + (f" {fields['os.version']}" if fields.get("os.version") else "")


def platform_fields(config: Mapping) -> dict:
    """A list entry's platform object from an image config, normalized through the platform
    table (arm64 gets v8, arm without a variant v7), Windows os.version and os.features kept."""
    try:
        known = from_oci(config.get("os", ""), config.get("architecture", ""), config.get("variant"))
    except InputError as error:
        raise BuilderError(f"an image config names {error.message}") from None
    fields = {"architecture": known.architecture, "os": known.os}
    if config.get("os.version"):
        fields["os.version"] = config["os.version"]
    if config.get("os.features"):
        fields["os.features"] = list(config["os.features"])
    if known.variant:
        fields["variant"] = known.variant
    return fields


def assemble(members: Sequence[Member], *, oci: bool = False) -> tuple[bytes, str]:
    """The list (or OCI index) of `members` in manifest-list order: the platform table's order,
    then Windows by os.version ascending. Returns (bytes, media type); the same members give
    the same bytes. Two members of the same platform and os.version are refused."""
    ordered = sorted(members, key=lambda m: m.platform.sort_key())
    seen: dict[str, str] = {}
    for member in ordered:
        other = seen.setdefault(member.label, member.manifest.digest)
        if other != member.manifest.digest:
            raise BuilderError(f"two images claim {member.label}: {other} and "
                               f"{member.manifest.digest}; a tag can hold one image per platform")
    media_type = OCI_INDEX if oci else DOCKER_LIST
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{"mediaType": m.manifest.media_type, "digest": m.manifest.digest,
                       "size": m.manifest.size, "platform": m.platform_fields}
                      for m in ordered],
    }
    return json.dumps(document, indent=3).encode(), media_type


# --- the stage -------------------------------------------------------------------------------

class Status(str, Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    PLANNED = "planned"  # --dry-run: would be written
    FAILED = "failed"


@dataclass(frozen=True)
class TagResult:
    tag: str
    reference: str  # "127.0.0.1:5000/python:3.8"
    status: Status
    digest: str | None = None
    media_type: str | None = None
    platforms: tuple[str, ...] = ()  # member labels in list order
    missing: tuple[str, ...] = ()  # per-arch references that were not found
    reason: str = ""

    def as_dict(self) -> dict:
        """For the JSON report."""
        return asdict(self) | {"status": self.status.value}

    def line(self) -> str:
        head = f"{self.reference}: {self.status.value}"
        if self.status is Status.FAILED:
            return f"{head}: {self.reason}"
        kind = "OCI index" if self.media_type == OCI_INDEX else "manifest list"
        text = f"{head} {self.digest} ({kind}: {', '.join(self.platforms)})"
        if self.missing:
            text += f"; PARTIAL, without {', '.join(self.missing)}"
        return text


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
        manifest = client.resolve_platform(ref, platform)
    except NotFound:
        return _Found(None, problem=str(ref), missing=True)
    config = client.get_config(ref.repository, manifest)
    member = Member(manifest, config)
    try:
        found_platform = member.platform
    except BuilderError as error:
        return _Found(None, problem=f"{ref}: {error}")
    if not platform.matches(found_platform.os, found_platform.architecture,
                            found_platform.variant, config.get("os.version")):
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
        return result
    if dry_run:
        return replace(result, status=Status.PLANNED)
    client.put_manifest(ref.repository, ref.tag, body, media_type)
    return replace(result, status=Status.WRITTEN)


def run(version: str, registry: str, *, versions_path: str, oci: bool = False,
        allow_missing: bool = False, arch_namespace_layout: bool = False, dry_run: bool = False,
        ca_bundle: str | None = None, report_path: str | None = None,
        out: Callable[[str], None] = print) -> int:
    """The `invoke publish` stage: exit code 0 when every tag is published or unchanged, else 1."""
    from .tags import tag_groups
    from .versions import load

    family = load(versions_path)
    wanted = family.version(version)
    groups = tag_groups(family, wanted)
    registry = registry.rstrip("/")
    client = registry_client(registry, family.repository, ca_bundle=ca_bundle)
    results = publish(client, registry, family.repository, wanted, groups, oci=oci,
                      allow_missing=allow_missing, arch_namespace_layout=arch_namespace_layout,
                      dry_run=dry_run)
    for result in results:
        out(result.line())
        if result.missing and result.status is not Status.FAILED:
            done = "would be published" if result.status is Status.PLANNED else "published"
            print(f"WARNING: {result.reference} {done} WITHOUT {', '.join(result.missing)} "
                  "(--allow-missing)", file=sys.stderr)
    failed = [r.tag for r in results if r.status is Status.FAILED]
    report = Report("publish", wanted.full, family.repository, registry)
    report.tags = [r.as_dict() for r in results]
    report.stage("publish", "failed" if failed else "ok", **Counter(r.status.value for r in results))
    report.write(report_path, EXIT_FAILED if failed else EXIT_OK)
    if failed:
        print(f"error: {len(failed)} of {len(results)} tags not published: {', '.join(failed)}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
