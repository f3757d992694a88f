"""Stage sign, of `release --sign-key` (it has no command of its own; `verify` checks what it
made): each job's image and attestation manifest signed as the job ends (`BuildSigning`, the
build stage's hooks), then every published tag's index and what else it lists
(`sign_published`). The signatures are `builder.attest.signing`'s, in cosign's format.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TextIO

from builder.attest import signing
from builder.farm.results import JobResult
from builder.farm.runner import Hooks
from builder.model.errors import EXIT_OK
from builder.model.reference import ImageRef
from builder.model.report import Report, Status
from builder.registry.client import RegistryClient


@dataclass(frozen=True)
class SignResult:
    """A release's sign stage: what it signed now (a digest signed before is not again)."""
    signed: tuple[str, ...]
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        report.stage("sign", Status.OK, signed=len(self.signed))


def built_references(result: JobResult, tags: ImageRef) -> list[tuple[str, str]]:
    """What of a job's result is signed as the job ends: its image in the registry and its
    attestation manifest, when they are in the repository of the tags (`tags`) that will list
    them (an image pushed elsewhere, --arch-namespace, is copied in by publish and signed then)."""
    name = f"{tags.registry}/{tags.repository}"
    image = ImageRef.parse(result.image) if result.digest and result.image else None
    if image is None or f"{image.registry}/{image.repository}" != name:
        return []
    return [(name, result.digest)] + ([(name, result.attestation["digest"])]
                                      if result.attestation else [])


class BuildSigning:
    """A release's signing while it builds: the key, being opened meanwhile (`ready`, once the
    engines are probed, waits for it: a password that does not open it stops the build there,
    nothing built), then each job's image and attestation manifest as the job ends, while the
    other jobs build (`finished`). Publish runs while what is left is signed, and
    `sign_published` signs the rest; leaving it stops what is not begun."""

    def __init__(self, client: RegistryClient, opening: Future, tags: ImageRef) -> None:
        self.client, self.tags = client, tags
        self._opening = opening
        self.signing: signing.Signing | None = None

    def __enter__(self) -> BuildSigning:
        return self

    def __exit__(self, *_) -> None:
        if self.signing is not None:
            self.signing.stop()

    @property
    def key(self) -> signing.SigningKey:
        return self._opening.result()

    def ready(self) -> None:
        if self.signing is None:
            self.signing = signing.start(self.client, self.key)

    def finished(self, result: JobResult) -> None:
        if self.signing is not None:
            self.signing.add(built_references(result, self.tags))

    def hooks(self) -> Hooks:
        return Hooks(ready=self.ready, finished=self.finished)


def sign_published(client: RegistryClient, published: dict[str, str], key: signing.SigningKey,
                   out: TextIO, *, early: signing.Signing | None = None) -> SignResult:
    """Sign each published tag's index ({reference: digest}), and every image and attestation
    manifest it lists, past what `early` (the build's, `BuildSigning`) has asked for, and wait
    for all of it."""
    targets: dict[tuple[str, str], None] = {}
    for text, digest in published.items():
        ref = ImageRef.parse(text)
        name = f"{ref.registry}/{ref.repository}"
        top = client.get_manifest(ref.repository, digest)
        targets[(name, digest)] = None
        for entry in top.json.get("manifests", []) if top.is_list else []:
            targets[(name, entry["digest"])] = None
    with early if early is not None else signing.start(client, key) as running:
        running.add(targets)
        done = running.wait()
    print(f"  signed {len(done)} of {len(running.references)} digests (the others were signed "
          "before)", file=out)
    return SignResult(tuple(done))
