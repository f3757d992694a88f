"""`verify`: a tag's signatures and attestations, checked with the signer's public key.

For each tag: its index is signed, and so is each image and each attestation manifest it
lists; each attestation manifest is about an image the index lists, and each statement in it
names that image's digest as its subject and says the predicate type its layer is annotated
with. Every problem is a line naming the tag (and the entry); exit 1 when there is one. The
signatures are checked by cosign, offline (`builder.attest.signing`).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TextIO

from builder.attest import signing
from builder.attest.statements import PREDICATE_ANNOTATION, REFERENCE_DIGEST, is_attestation
from builder.model.errors import EXIT_FAILED, EXIT_OK
from builder.model.report import Report, Status
from builder.registry.client import NotFound, Registries, RegistryClient
from builder.model.reference import ImageRef, Manifest


@dataclass(frozen=True)
class VerifyOptions:
    images: tuple[str, ...]  # tags: 127.0.0.1:5000/python:3.14-slim
    key: str  # cosign's public key
    ca_bundle: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    checked: tuple[str, ...]  # the tags checked
    problems: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.problems else EXIT_OK

    def add_to(self, report: Report) -> None:
        if self.problems:
            report.stage("verify", Status.FAILED, problems=list(self.problems),
                         reason=f"{len(self.problems)} problems: {self.problems[0]}")
        else:
            report.stage("verify", Status.OK, tags=len(self.checked))


def run(options: VerifyOptions, out: TextIO) -> VerifyResult:
    registries = Registries()
    problems: list[str] = []
    for text in options.images:
        ref = ImageRef.parse(text)
        found = check_tag(registries.client(ref.registry, ca_bundle=options.ca_bundle), ref,
                          options.key)
        print(f"{ref}: {'verified' if not found else 'FAILED'}", file=out)
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        problems += found
    return VerifyResult(tuple(options.images), tuple(problems))


def check_tag(client: RegistryClient, ref: ImageRef, key: str) -> list[str]:
    try:
        top = client.get_manifest(ref.repository, ref.tag)
    except NotFound:
        return [f"{ref}: no such tag"]
    with signing.access(client) as reach:
        return _check(client, ref, key, top, reach)


def _check(client: RegistryClient, ref: ImageRef, key: str, top: Manifest,
           reach: signing.Access) -> list[str]:
    """What is wrong with the tag `ref`, whose document is `top`."""
    name = f"{ref.registry}/{ref.repository}"

    def unsigned(what: str, digest: str) -> list[str]:
        why = signing.verify(key, f"{name}@{digest}", reach)
        return [f"{ref}: {what} {digest} is not signed by {key}: {why}"] if why else []

    problems = unsigned("the index", top.digest)
    entries = top.json.get("manifests", []) if top.is_list else []
    images = {e["digest"] for e in entries if not is_attestation(e)}
    attested = set()
    for entry in entries:
        problems += unsigned("the attestation manifest" if is_attestation(entry)
                             else "the image", entry["digest"])
        if is_attestation(entry):
            subject = entry["annotations"].get(REFERENCE_DIGEST, "")
            attested.add(subject)
            problems += _statements(client, ref, entry["digest"], subject, images)
    problems += [f"{ref}: the image {digest} has no attestation manifest"
                 for digest in sorted(images - attested)]
    return problems


def _statements(client: RegistryClient, ref: ImageRef, digest: str, subject: str,
                images: set[str]) -> list[str]:
    """What is wrong with the attestation manifest `digest`, about the image `subject`."""
    where = f"{ref}: the attestation manifest {digest}"
    if subject not in images:
        return [f"{where} is about {subject or 'no image'}, which the index does not list"]
    manifest = client.get_manifest(ref.repository, digest)
    problems = []
    for layer in manifest.json.get("layers", []):
        kind = (layer.get("annotations") or {}).get(PREDICATE_ANNOTATION)
        statement = json.loads(client.get_blob(ref.repository, layer["digest"]))
        subjects = ["sha256:" + s.get("digest", {}).get("sha256", "")
                    for s in statement.get("subject", [])]
        if statement.get("predicateType") != kind:
            problems.append(f"{where}: a statement says {statement.get('predicateType')}, its "
                            f"layer {kind}")
        if subjects != [subject]:
            problems.append(f"{where}: a {kind} statement is about {', '.join(subjects)}, "
                            f"not {subject}")
    return problems
