"""A tag's index with its images' attestation manifests and the OCI annotations upstream writes.

An image built by this run brings its attestation manifest's descriptor; an image the tag lists
already (unchanged, not built again) keeps the one the tag's index lists for it now, so a no-op
release writes the same bytes and makes no new statement. With attestations the tag is an OCI
index (`builder.attest.statements.with_attestations`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from builder.attest.statements import attested, with_attestations
from builder.model.reference import LIST_TYPES, OCI_INDEX, Descriptor
from builder.publish.lists import Member

VERSION = "org.opencontainers.image.version"
CREATED = "org.opencontainers.image.created"


def annotations(version: str, member: Member) -> dict[str, str]:
    """A member's entry's annotations: the version and its image's own creation time."""
    created = member.config.get("created")
    return {VERSION: version} | ({CREATED: created} if isinstance(created, str) else {})


def attach(client, repository: str, body: bytes, media_type: str, members: Sequence[Member],
           current: Descriptor | None, fresh: Mapping[str, Mapping],
           version: str) -> tuple[bytes, str]:
    """`body` (the tag's list) with every member's attestation entry: `fresh`'s ({image digest:
    descriptor}, pushed by this run), else the one `current` (the tag's document now) lists."""
    kept: dict[str, dict] = {}
    if current is not None and current.media_type in LIST_TYPES:
        kept = attested(client.get_manifest(repository, current.digest).json)
    described = {m.manifest.digest: annotations(version, m) for m in members}
    created = sorted(a[CREATED] for a in described.values() if CREATED in a)
    index = {VERSION: version} | ({CREATED: created[-1]} if created else {})
    attached = with_attestations(body, kept | dict(fresh), index, described)
    return attached, OCI_INDEX if attached != body else media_type
