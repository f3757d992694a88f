"""A tag's index with its images' attestation manifests and the OCI annotations upstream writes.

An image built by this run brings its attestation manifest's descriptor; an image the tag lists
already (unchanged, not built again) keeps the one the tag's index lists for it now, so a no-op
release writes the same bytes and makes no new statement. Each image's entry is annotated from
its `Origin` (`builder.publish.annotations`); a member this run has no origin for (a lagging one,
kept from the tag's index) keeps the annotations that index gives it. With attestations the tag
is an OCI index (`builder.attest.statements.with_attestations`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from builder.attest.statements import attested, is_attestation, with_attestations
from builder.model.reference import LIST_TYPES, OCI_INDEX, Descriptor
from builder.publish.annotations import CREATED, Origin, image_annotations, index_annotations
from builder.publish.lists import Member


def attach(client, repository: str, body: bytes, media_type: str, members: Sequence[Member],
           current: Descriptor | None, fresh: Mapping[str, Mapping],
           origins: Mapping[str, Origin]) -> tuple[bytes, str]:
    """`body` (the tag's list) with every member's attestation entry: `fresh`'s ({image digest:
    descriptor}, pushed by this run), else the one `current` (the tag's document now) lists;
    each member's entry annotated from `origins` ({image digest: origin})."""
    kept: dict[str, dict] = {}
    listed: dict[str, dict] = {}
    if current is not None and current.media_type in LIST_TYPES:
        document = client.get_manifest(repository, current.digest).json
        kept = attested(document)
        listed = {entry["digest"]: dict(entry.get("annotations") or {})
                  for entry in document.get("manifests", []) if not is_attestation(entry)}
    described = {}
    for member in members:
        digest, created = member.manifest.digest, member.config.get("created")
        if digest in origins:
            described[digest] = image_annotations(origins[digest], created)
        else:
            described[digest] = listed.get(digest) or (
                {CREATED: created} if isinstance(created, str) else {})
    attached = with_attestations(body, kept | dict(fresh), index_annotations(described.values()),
                                 described)
    return attached, OCI_INDEX if attached != body else media_type
