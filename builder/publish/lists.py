"""The publish stage's pure core: per-arch images in, the bytes of their manifest list out.

``assemble`` turns manifests and configs into the list's bytes, the same bytes for the same
images, so a re-run compares digests and writes nothing. `builder.publish.writer` is the edge that
finds the images in the registry and writes the lists.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from builder.model.errors import BuilderError, InputError
from builder.model.platforms import Platform, from_oci, image_platform
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, Manifest
from builder.model.report import Status


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
    found = image_platform(config)
    try:
        known = from_oci(found.os, found.architecture, found.variant)
    except InputError as error:
        raise BuilderError(f"an image config names {error.message}") from None
    fields = {"architecture": known.architecture, "os": known.os}
    if found.os_version:
        fields["os.version"] = found.os_version
    if config.get("os.features"):
        fields["os.features"] = list(config["os.features"])
    if known.variant:
        fields["variant"] = known.variant
    return fields


def list_media_type(member_types: Iterable[str], *, oci: bool = False) -> str:
    """What a list of manifests of `member_types` is: an OCI index when `oci` asks for one or
    when any member is not a Docker v2 manifest (a Docker manifest list names only those, and
    the containerd image store pushes OCI manifests), else a Docker manifest list."""
    if oci or any(media_type != DOCKER_MANIFEST for media_type in member_types):
        return OCI_INDEX
    return DOCKER_LIST


def assemble(members: Sequence[Member], *, oci: bool = False) -> tuple[bytes, str]:
    """The list of `members` in manifest-list order: the platform table's order, then Windows
    by os.version ascending; an OCI index or a Docker manifest list as `list_media_type` says.
    Returns (bytes, media type); the same members give the same bytes. Two members of the same
    platform and os.version are refused."""
    ordered = sorted(members, key=lambda m: m.platform.sort_key())
    seen: dict[str, str] = {}
    for member in ordered:
        other = seen.setdefault(member.label, member.manifest.digest)
        if other != member.manifest.digest:
            raise BuilderError(f"two images claim {member.label}: {other} and "
                               f"{member.manifest.digest}; a tag can hold one image per platform")
    media_type = list_media_type((m.manifest.media_type for m in ordered), oci=oci)
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{"mediaType": m.manifest.media_type, "digest": m.manifest.digest,
                       "size": m.manifest.size, "platform": m.platform_fields}
                      for m in ordered],
    }
    return json.dumps(document, indent=3).encode(), media_type


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
    stale: tuple[str, ...] = ()  # per-arch references refused: not what the plan builds now
    moved: tuple[str, ...] = ()  # per-arch references this run pushed that changed since
    lagging: tuple[str, ...] = ()  # members kept from the tag's list: "linux/riscv64 at 3.14.6"
    retries: int = 0  # transient registry failures its reads and write got past
    members: tuple[str, ...] = ()  # the job keys it is made of: 1.0.0/busybox/amd64
    # Written while these tags of its variant kept their old list (a write failed, and the
    # roll-back too): the registry's tag set is split, named here until a re-run joins it.
    split_from: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """For the JSON report."""
        return asdict(self) | {"status": self.status.value}

    def line(self) -> str:
        head = f"{self.reference}: {self.status.value}"
        if self.status in (Status.FAILED, Status.KEPT):
            return f"{head}: {self.reason}"
        kind = "OCI index" if self.media_type == OCI_INDEX else "manifest list"
        text = f"{head} {self.digest} ({kind}: {', '.join(self.platforms)})"
        if self.missing:
            text += f"; PARTIAL, without {', '.join(self.missing)}"
        if self.lagging:
            text += f"; LAGGING {', '.join(self.lagging)}"
        if self.split_from:
            text += f"; {self.reason}"
        return text
