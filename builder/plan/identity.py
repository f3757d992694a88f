"""What a build job IS: the Dockerfile as sent, its context, its build hash.

Pure: a job, its parent's image, its bases' pins and the source mirrors in; a `Prepared` out.
The build stage prepares a job to send it to an engine; publish prepares a member it did not
build to see whether the image in the registry is still the one the plan builds now. Both go
through `prepare`, so the two can never disagree on a hash.

Base images. A FROM of another variant of the same version builds FROM that variant's image
(`parent`); every other FROM is a base pinned to its per-platform manifest digest (`pins`,
looked up by `builder.registry.pins`): ``FROM <mirror>/library/busybox@sha256:…``. Pinning
keeps the classic builder from going to docker.io when a local tag has another platform
(docs/classic-builder.md, trap 4), and the digest feeds the build hash.

Build hash. sha256 over the Dockerfile as sent (FROM pinned, URLs rewritten to the mirrors),
the other context files, the build args and the platform; stored in the image label
`HASH_LABEL`. When the registry already holds the per-arch image with that label, the build
stage skips the job, and publish takes the image as current.
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Callable, Mapping

from builder.model.mirrors import Mirror
from builder.model.platforms import Platform
from builder.model.reference import ImageRef, sha256_digest
from builder.plan.dockerfile import from_images, rewrite_from, rewrite_urls
from builder.plan.plan import BuildJob

HASH_LABEL = "org.python-image-builder.build-hash"


@dataclass(frozen=True)
class Prepared:
    dockerfile: str  # FROM lines pinned, upstream URLs rewritten to their mirrors
    context: bytes  # the tar sent to the engine
    build_hash: str
    bases: tuple[str, ...]  # pinned registry references the engine pulls first: repo@sha256:…
    mirrors: tuple[Mirror, ...] = ()  # the mirrors the Dockerfile as sent fetches from


def bases(job: BuildJob) -> list[str]:
    """The FROM images of `job` to pin: all but its parent's (the variant it builds FROM)."""
    return [image for image in from_images(job.dockerfile_text)
            if not (job.parent and image == job.variant.base_image)]


def pin_bases(job: BuildJob, pin: Callable[[str, Platform], str]) -> dict[str, str]:
    """Every base of `job` → its pinned reference, for `prepare`; `pin` is the run's
    (`builder.registry.pins.BasePins.pin`), asked in FROM order."""
    return {image: pin(image, job.platform) for image in bases(job)}


def parent_reference(image: str, digest: str) -> str:
    """A pushed parent image by digest: `host/repository@sha256:…`."""
    return f"{ImageRef.parse(image).familiar_repository}@{digest}"


def prepare(job: BuildJob, parent: str | None, pins: Mapping[str, str],
            mirrors: tuple[Mirror, ...]) -> Prepared:
    """`job` as it is sent: `pins` maps each of its `bases` to its pinned reference; `parent`
    (needed when the job has one) is the parent's image as the job builds FROM it: its
    registry reference by digest, or the id of the local image an engine just built."""
    images = bases(job)
    pinned = {image: pins[image] for image in images}
    if job.parent:
        pinned[job.variant.base_image] = parent
    dockerfile, used = rewrite_urls(rewrite_from(job.dockerfile_text, pinned), mirrors)
    return Prepared(dockerfile, context_tar(dockerfile),
                    build_hash(dockerfile, job.build_args, job.platform.oci),
                    tuple(pins[image] for image in images), used)


def build_hash(dockerfile: str, build_args: dict[str, str], platform: str) -> str:
    """The content identity of a build (pinned base digests are part of `dockerfile`)."""
    # "files" stays, empty: the context once took other files from the tree, and the images
    # hashed then keep their hashes.
    document = {"dockerfile": dockerfile, "platform": platform, "build_args": build_args,
                "files": {}}
    return sha256_digest(json.dumps(document, sort_keys=True).encode())


def context_tar(dockerfile: str) -> bytes:
    """The build context: the Dockerfile as sent, alone. It is what generate writes for the
    job's directory (render writes only Dockerfiles); nothing is read from the tree, so no
    untracked or temporary file, and no symlink out of the tree, reaches an engine."""
    buffer = io.BytesIO()
    data = dockerfile.encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
