"""Base images into the base mirror, standing in for Docker Hub: `invoke mirror`'s Debian bases,
and the test bed's busybox images through the same `ensure_image`.

What a Debian base is, and its rootfs, is `builder.mirror.bases`. Here the mirror is read and
written through its `RegistryClient` (retries, the document cache, credentials for that host
alone), a list is assembled by `builder.publish.lists` (the same bytes for the same images, so
a second fill writes nothing), and the images are built, checked and pushed with
`builder.farm.engineapi` (its push retry, its error kinds).
"""
from __future__ import annotations

import io
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Sequence, TextIO

from builder.farm import engineapi
from builder.model.builders import Engine
from builder.mirror.bases import (DEBIAN_DOCKERFILE, DEBIAN_REPO, DOCKER_APT_CONF, SOURCE_LABEL,
                                  BaseImageError, debian_tag, rootfs)
from builder.model.platforms import Platform, image_platform
from builder.model.reference import IMAGE_TYPES, ImageRef, sha256_digest
from builder.publish.lists import Member, assemble
from builder.registry.client import NotFound, RegistryClient


@dataclass(frozen=True)
class BaseImage:
    """An image the mirror should hold: where, of which platform, made from what (`label`'s
    value, `source`)."""
    repository: str  # "library/debian"
    tag: str  # "trixie-slim-amd64"
    platform: Platform
    source: str
    label: str = SOURCE_LABEL


def pushed_image(registry: RegistryClient, wanted: BaseImage) -> Member | None:
    """The image at `wanted`'s tag if it is of its platform and labelled as made from its
    source, else None (missing, a list, another platform, or made from something else). A
    Docker v2 and an OCI manifest alike: an engine on the containerd image store pushes OCI."""
    try:
        manifest = registry.get_manifest(wanted.repository, wanted.tag)
    except NotFound:
        return None
    if manifest.media_type not in IMAGE_TYPES:
        return None
    config = registry.get_config(wanted.repository, manifest)
    labels = (config.get("config") or {}).get("Labels") or {}
    if labels.get(wanted.label) != wanted.source:
        return None
    if not wanted.platform.matches(*image_platform(config)):
        return None
    return Member(manifest, config)


def ensure_image(client, registry: RegistryClient, wanted: BaseImage,
                 files: Mapping[str, bytes | Path], *,
                 scratch: Path | None = None) -> tuple[Member, bool]:
    """`wanted` in the mirror, FROM-scratch built from `files` (a Dockerfile among them, its
    build arg SOURCE the label's value) with the local engine `client` and pushed, unless the
    mirror has it already; True when it was made. `scratch` holds the context while it is sent."""
    found = pushed_image(registry, wanted)
    if found is not None:
        return found, False
    p = wanted.platform
    ref = ImageRef.parse(f"{registry.registry}/{wanted.repository}:{wanted.tag}")
    engine = Engine("local", client.api.base_url, (p,))
    with _context(files, scratch) as context:
        image_id = engineapi.build(client.api, engine, context, p,
                                   build_args={"SOURCE": wanted.source}, labels={},
                                   nocache=False, on_event=lambda event: None)
    # The classic builder's cache can hand back another platform's image for FROM scratch.
    engineapi.check_platform(client.api, engine, image_id, p)
    engineapi.tag(client.api, image_id, ref)
    engineapi.push(client.api, ref, registry)
    made = pushed_image(registry, wanted)
    if made is None:
        raise BaseImageError(f"{ref}: pushed, but the mirror does not hold it as {p.oci}")
    return made, True


@contextmanager
def _context(files: Mapping[str, bytes | Path], scratch: Path | None) -> Iterator[BinaryIO]:
    """The build context, a tar of `files` (bytes, or a file copied in with its mode) in a
    temporary file: a rootfs tarball is too big to hold in memory."""
    with tempfile.TemporaryFile(prefix="context-", dir=scratch) as stream:
        with tarfile.open(fileobj=stream, mode="w") as tar:
            for name, content in files.items():
                if isinstance(content, Path):
                    tar.add(content, arcname=name)
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
        stream.seek(0)
        yield stream


def ensure_list(registry: RegistryClient, repository: str, tag: str,
                members: Sequence[Member]) -> bool:
    """Make repository:tag the list of `members` (an OCI index if one is an OCI manifest, as
    `assemble` chooses) unless it already is (the same bytes: `assemble` gives the same list
    for the same images); True if written."""
    body, media_type = assemble(members)
    current = registry.head_manifest(repository, tag)
    if current and current.digest == sha256_digest(body):
        return False
    registry.put_manifest(repository, tag, body, media_type)
    return True


def ensure_debian(client, registry: RegistryClient, suite: str, slim: bool,
                  platforms: tuple[Platform, ...], cache: Path,
                  out: TextIO | None = None) -> dict[str, Member]:
    """library/debian:<suite>[-slim] for `platforms` in the mirror `registry`, built with the
    local engine `client`; builds only what the mirror lacks. The images, by platform name."""
    out = out or sys.stdout
    members = {}
    for p in platforms:
        made = rootfs(cache, suite, p, slim, out)
        wanted = BaseImage(DEBIAN_REPO, f"{made.tag}-{p.name}", p, made.source)
        files = {"Dockerfile": DEBIAN_DOCKERFILE.encode(),
                 "docker-apt.conf": DOCKER_APT_CONF.encode(), "rootfs.tar": made.tarball}
        members[p.name], built = ensure_image(client, registry, wanted, files, scratch=cache)
        print(f"{DEBIAN_REPO}:{wanted.tag}: {'built and pushed' if built else 'up to date'}",
              file=out)
    tag = debian_tag(suite, slim)
    written = ensure_list(registry, DEBIAN_REPO, tag, list(members.values()))
    print(f"{registry.registry}/{DEBIAN_REPO}:{tag}: {'written' if written else 'up to date'} "
          f"({', '.join(p.name for p in platforms)})", file=out)
    return members
