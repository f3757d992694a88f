"""Base images made on this machine and pushed to the base mirror, standing in for Docker Hub.

`debian:<suite>` and `debian:<suite>-slim` (trixie, bookworm): an `mmdebstrap
--variant=minbase` rootfs per platform, the slim one with the path excludes of Debian's slim
images (docs but their copyright files, info, man pages, locales, lintian overrides), put in
FROM scratch and built with the job's platform (`docker import` would label every one amd64).
Each per-platform image is pushed as `library/debian:<tag>-<platform>`, then one manifest list
`library/debian:<tag>` holds them.

Each image carries the label org.python-image-builder.source naming its rootfs tarball's
sha256; the tarballs are cached, so a second fill finds every image up to date in the mirror
and builds nothing. The mirror is read and written through its `RegistryClient` (retries, the
document cache, credentials for that host alone), the list is assembled by
`builder.publish.lists`, and the images are built, checked and pushed with
`builder.farm.engineapi` (its push retry, its error kinds). The test bed's busybox images go
through the same `ensure_image`.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Sequence, TextIO

from builder.farm import engineapi
from builder.farm.builders import Engine
from builder.model.errors import BuilderError, InputError
from builder.model.platforms import Platform, image_platform
from builder.model.reference import DOCKER_MANIFEST, ImageRef, sha256_digest
from builder.publish.lists import Member, assemble
from builder.registry.client import NotFound, RegistryClient

SOURCE_LABEL = "org.python-image-builder.source"
DEBIAN_REPO = "library/debian"
DEBIAN_SUITES = ("trixie", "bookworm")
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"

# What Debian's -slim images leave out (debuerreotype's slimify list); dpkg keeps applying it
# to every package installed later, as in the official slim images.
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/info/*", "/usr/share/linda/*",
                 "/usr/share/lintian/overrides/*", "/usr/share/locale/*", "/usr/share/man/*")
SLIM_INCLUDES = ("/usr/share/doc/*/copyright",)

# As Debian's own images configure apt for containers (debuerreotype's docker-* snippets):
# without SuggestsImportant "false", `apt-get purge --auto-remove` keeps every package a manual
# one merely suggests, and a slim image would keep the gcc it was built with.
DOCKER_APT_CONF = """\
APT::AutoRemove::SuggestsImportant "false";
Acquire::Languages "none";
"""

# ADD first: each platform's rootfs differs, so the classic builder's cache, which ignores the
# platform for FROM scratch, cannot hand one platform's layer to another.
DEBIAN_DOCKERFILE = f"""\
FROM scratch
ADD rootfs.tar /
COPY docker-apt.conf /etc/apt/apt.conf.d/docker-image
ARG SOURCE
LABEL {SOURCE_LABEL}=$SOURCE
CMD ["bash"]
"""


class BaseImageError(BuilderError):
    """A base image could not be made, or the mirror does not hold what was pushed."""


@dataclass(frozen=True)
class BaseImage:
    """An image the mirror should hold: where, of which platform, made from what (`label`'s
    value, `source`)."""
    repository: str  # "library/debian"
    tag: str  # "trixie-slim-amd64"
    platform: Platform
    source: str
    label: str = SOURCE_LABEL


def debian_tag(suite: str, slim: bool) -> str:
    return suite + ("-slim" if slim else "")


@dataclass(frozen=True)
class Rootfs:
    suite: str
    platform: Platform
    slim: bool
    tarball: Path
    sha256: str

    @property
    def tag(self) -> str:
        return debian_tag(self.suite, self.slim)

    @property
    def source(self) -> str:
        apt_conf = hashlib.sha256(DOCKER_APT_CONF.encode()).hexdigest()[:12]
        return (f"mmdebstrap {self.suite} minbase{' slim' if self.slim else ''} "
                f"{self.platform.debian_arch} tar sha256:{self.sha256} apt.conf {apt_conf}")


# --- the mirror and the engine ----------------------------------------------------------------

def pushed_image(registry: RegistryClient, wanted: BaseImage) -> Member | None:
    """The image at `wanted`'s tag if it is of its platform and labelled as made from its
    source, else None (missing, a list, another platform, or made from something else)."""
    try:
        manifest = registry.get_manifest(wanted.repository, wanted.tag)
    except NotFound:
        return None
    if manifest.media_type != DOCKER_MANIFEST:
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
    """Make repository:tag the Docker manifest list of `members` unless it already is (the
    same bytes: `assemble` gives the same list for the same images); True if written."""
    body, media_type = assemble(members)
    current = registry.head_manifest(repository, tag)
    if current and current.digest == sha256_digest(body):
        return False
    registry.put_manifest(repository, tag, body, media_type)
    return True


# --- Debian --------------------------------------------------------------------------------

def mmdebstrap_argv(suite: str, p: Platform, slim: bool, output: Path,
                    archive: str = DEBIAN_ARCHIVE) -> list[str]:
    """The mmdebstrap command of one rootfs; foreign architectures run under QEMU."""
    options = []
    if slim:
        options += [f"--dpkgopt=path-exclude={path}" for path in SLIM_EXCLUDES]
        options += [f"--dpkgopt=path-include={path}" for path in SLIM_INCLUDES]
    return ["mmdebstrap", "--quiet", "--variant=minbase", f"--architectures={p.debian_arch}",
            "--format=tar", "--skip=output/dev", *options, suite, str(output), archive]


def rootfs(cache: Path, suite: str, p: Platform, slim: bool, out: TextIO) -> Rootfs:
    """The cached rootfs tarball of (suite, platform, slim), made by mmdebstrap if missing."""
    if p.debian_arch is None or p.os != "linux":
        raise InputError(f"{p.name}: Debian has no architecture for it", field="platform")
    name = f"{suite}-minbase{'-slim' if slim else ''}-{p.debian_arch}"  # as scripts/setup names it
    tarball = cache / f"{name}.tar"
    digest_file = cache / f"{name}.tar.sha256"
    if not (tarball.is_file() and digest_file.is_file()):
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f"{name}.tar.part"
        print(f"mmdebstrap {name} …", file=out, flush=True)
        result = subprocess.run(mmdebstrap_argv(suite, p, slim, partial), capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "; ".join(result.stderr.strip().splitlines()[-3:])
            raise BaseImageError(f"mmdebstrap {name} failed: {tail}")
        digest = hashlib.sha256()
        with partial.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        digest_file.write_text(digest.hexdigest() + "\n")
        os.replace(partial, tarball)
    return Rootfs(suite, p, slim, tarball, digest_file.read_text().strip())


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
