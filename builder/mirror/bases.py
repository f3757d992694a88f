"""Debian base images as this machine makes them: what goes in, and the rootfs that mmdebstrap makes.

`debian:<suite>` and `debian:<suite>-slim` (trixie, bookworm): an `mmdebstrap
--variant=minbase` rootfs per platform, the slim one with the path excludes of Debian's slim
images (docs but their copyright files, info, man pages, locales, lintian overrides), put in
FROM scratch and built with the job's platform (`docker import` would label every one amd64).
Each per-platform image is pushed as `library/debian:<tag>-<platform>`, then one list
`library/debian:<tag>` holds them: a Docker manifest list, or an OCI index when the engine
pushed OCI manifests (the containerd image store does).

Each image carries the label org.python-image-builder.source naming its rootfs tarball's
sha256; the tarballs are cached, so a second fill finds every image up to date in the mirror
and builds nothing. Building, pushing and listing them is `builder.commands.bases`, which
composes the engine calls, the registry client and the list assembly of the later stages.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.model.errors import BuilderError, InputError
from builder.model.platforms import Platform

SOURCE_LABEL = "org.python-image-builder.source"
DEBIAN_REPO = "library/debian"
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"

# What Debian's -slim images leave out (debuerreotype's slimify list); dpkg keeps applying it
# to every package installed later, as in the official slim images.
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/info/*", "/usr/share/linda/*",
                 "/usr/share/lintian/overrides/*", "/usr/share/locale/*", "/usr/share/man/*")
SLIM_INCLUDES = ("/usr/share/doc/*/copyright",)

# As Debian's own images configure apt for containers (debuerreotype's docker-* snippets):
# without SuggestsImportant "false", `apt-get purge --auto-remove` keeps every package a manual
# one merely suggests, and a slim image would keep the gcc it was built with; without the
# clean-up hooks, bookworm's apt-get keeps every .deb it downloaded in the layer that installed
# it (a python:3.14-slim-bookworm of 205 MB instead of about 45).
DOCKER_APT_CONF = """\
APT::AutoRemove::SuggestsImportant "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""

# Bookworm's essential init-system-helpers depends on "usrmerge | usr-is-merged", and
# mmdebstrap's default takes usrmerge, which pulls in the whole perl: 46 MB of a 135 MB slim
# base, where Debian's own bookworm images have perl-base only. mmdebstrap's merged-usr hook
# makes the /usr symlinks as debootstrap does and installs usr-is-merged instead. Trixie's
# base-files makes the symlinks itself and needs neither.
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
MERGED_USR_SUITES = ("bookworm",)

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


# --- the rootfs --------------------------------------------------------------------------------

def mmdebstrap_argv(suite: str, p: Platform, slim: bool, output: Path,
                    archive: str = DEBIAN_ARCHIVE) -> list[str]:
    """The mmdebstrap command of one rootfs; foreign architectures run under QEMU."""
    options = []
    if slim:
        options += [f"--dpkgopt=path-exclude={path}" for path in SLIM_EXCLUDES]
        options += [f"--dpkgopt=path-include={path}" for path in SLIM_INCLUDES]
    if suite in MERGED_USR_SUITES:
        options.append(f"--hook-dir={MERGED_USR_HOOK}")
    return ["mmdebstrap", "--quiet", "--variant=minbase", f"--architectures={p.debian_arch}",
            "--format=tar", "--skip=output/dev", *options, suite, str(output), archive]


def rootfs(cache: Path, suite: str, p: Platform, slim: bool, out: TextIO) -> Rootfs:
    """The cached rootfs tarball of (suite, platform, slim), made by mmdebstrap if missing."""
    if p.debian_arch is None or p.os != "linux":
        raise InputError(f"{p.name}: Debian has no architecture for it", field="platform")
    # As scripts/setup names trixie's; a hooked suite's name says so, so that a rootfs cached
    # before the hook is not taken for one made with it.
    name = (f"{suite}-minbase{'-slim' if slim else ''}-{p.debian_arch}"
            f"{'-merged-usr' if suite in MERGED_USR_SUITES else ''}")
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
