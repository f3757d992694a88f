"""In-toto statements and the attestation manifest that carries them, as BuildKit stores them
(pure), so that readers of BuildKit's attestations (Docker Scout, `docker buildx imagetools
inspect --format '{{json .SBOM}}'`, policy tools) read ours unchanged.

An image's attestation manifest is an OCI image manifest whose config says unknown/unknown and
whose layers are the statements (``application/vnd.in-toto+json``, each annotated with its
``in-toto.io/predicate-type``); the tag's OCI index lists it after the images, with platform
unknown/unknown and ``vnd.docker.reference.type: attestation-manifest``,
``vnd.docker.reference.digest: <the image's digest>``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from builder.model.reference import OCI_INDEX, OCI_MANIFEST

STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
IN_TOTO = "application/vnd.in-toto+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
UNKNOWN_PLATFORM = {"architecture": "unknown", "os": "unknown"}


def _bytes(document: Mapping) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def subject_name(reference: str, platform: str) -> str:
    """The statement subject's name as BuildKit writes it: pkg:docker/<repo>@<tag>?platform=."""
    return f"pkg:docker/{reference}?platform={platform.replace('/', '%2F')}"


def statement(name: str, image_digest: str, predicate_type: str, predicate: Mapping) -> bytes:
    """An in-toto statement about the image `image_digest` (its manifest's digest)."""
    algorithm, _, hexdigest = image_digest.partition(":")
    return _bytes({"_type": STATEMENT_TYPE, "predicateType": predicate_type,
                   "subject": [{"name": name, "digest": {algorithm: hexdigest}}],
                   "predicate": predicate})


@dataclass(frozen=True)
class AttestationManifest:
    """What to push: the blobs (config and statements) and the manifest, by digest."""
    image_digest: str
    blobs: tuple[bytes, ...]
    body: bytes

    @property
    def digest(self) -> str:
        return _digest(self.body)

    def descriptor(self) -> dict:
        """Its entry in the tag's OCI index."""
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": len(self.body),
                "annotations": {REFERENCE_DIGEST: self.image_digest,
                                REFERENCE_TYPE: ATTESTATION_MANIFEST},
                "platform": dict(UNKNOWN_PLATFORM)}


def attestation_manifest(image_digest: str,
                         statements: Sequence[tuple[str, bytes]]) -> AttestationManifest:
    """The manifest of `statements` ((predicate type, statement bytes), in order)."""
    layers = [{"mediaType": IN_TOTO, "digest": _digest(data), "size": len(data),
               "annotations": {PREDICATE_ANNOTATION: kind}} for kind, data in statements]
    config = _bytes(UNKNOWN_PLATFORM | {"config": {}, "rootfs": {
        "type": "layers", "diff_ids": [layer["digest"] for layer in layers]}})
    body = _bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": OCI_CONFIG, "digest": _digest(config),
                              "size": len(config)},
                   "layers": layers})
    return AttestationManifest(image_digest, (config, *(data for _, data in statements)), body)


def is_attestation(entry: Mapping) -> bool:
    """An index entry that is an attestation manifest (ours or BuildKit's)."""
    return (entry.get("annotations") or {}).get(REFERENCE_TYPE) == ATTESTATION_MANIFEST


def attested(index: Mapping) -> dict[str, dict]:
    """An index's attestation entries, by the digest of the image each is about."""
    return {entry["annotations"][REFERENCE_DIGEST]: dict(entry)
            for entry in index.get("manifests", [])
            if is_attestation(entry) and REFERENCE_DIGEST in entry.get("annotations", {})}


def with_attestations(body: bytes, attestations: Mapping[str, Mapping],
                      annotations: Mapping[str, str] | None = None,
                      described: Mapping[str, Mapping[str, str]] | None = None) -> bytes:
    """The list `body` as an OCI index with, after its images, the attestation entry of each
    image that has one in `attestations` ({image digest: descriptor}), `annotations` on the
    index and `described` ({image digest: annotations}) on the images' entries. Without any,
    `body` as it was."""
    document = json.loads(body)
    images = [e for e in document["manifests"] if not is_attestation(e)]
    extra = [dict(attestations[e["digest"]]) for e in images if e["digest"] in attestations]
    if not extra and not annotations and not described:
        return body
    for entry in images:
        if (described or {}).get(entry["digest"]):
            entry["annotations"] = dict(sorted(described[entry["digest"]].items()))
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": images + extra}
    if annotations:
        document["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(document, indent=3).encode()
