"""Base images made on this machine and pushed to the mirror registry, standing in for Docker Hub.

- ``library/busybox:<platform name>``: FROM scratch + Debian's static busybox, one per platform,
  and ``library/busybox:latest``, the manifest list of them (an OCI index if the engine that
  made them pushed OCI manifests).
- ``library/debian:trixie``: builder.commands.bases' image of the minbase rootfs scripts/setup made (amd64).

scripts/setup fetches the inputs into the cache; this module builds them with the registry and
engine helpers of builder.commands.bases (which makes the product's Debian bases). Each image
carries a ``testbed.source`` label naming its input's SHA256, so a mirror that already holds the
same inputs is left alone.

    python -m testbed.baseimages debian-arches   # the dpkg architectures scripts/setup fetches
    python -m testbed.baseimages seed HOST       # push library/busybox to the plain registry HOST
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import docker

from builder.commands import bases
from builder.commands.bases import BaseImage, ensure_image, ensure_list
from builder.mirror.bases import BaseImageError
from builder.model.errors import BuilderError
from builder.model.platforms import Platform, platform
from builder.publish.lists import Member
from builder.registry.client import RegistryClient

from .paths import cache_dir
from .registry import Registry

BUSYBOX_PLATFORMS: tuple[Platform, ...] = tuple(
    platform(name) for name in
    ("amd64", "arm32v5", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x"))
BUSYBOX_REPO = "library/busybox"
SOURCE_LABEL = "testbed.source"


# The first instruction after FROM scratch copies a file whose content is the platform: the classic
# builder's cache ignores the platform for FROM scratch (libs-trial §2), and arm32v5 and arm32v6
# share one binary. A metadata instruction before the first COPY would break non-native builds.
BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY build-platform /etc/build-platform
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG SOURCE
LABEL testbed.source=$SOURCE
CMD ["sh"]
"""


def busybox_binary(p: Platform) -> tuple[Path, str]:
    """The cached static busybox for `p` and the SHA256 of the .deb it came from."""
    directory = cache_dir() / "busybox" / p.debian_arch
    try:
        return directory / "busybox", (directory / "deb.sha256").read_text().strip()
    except FileNotFoundError:
        raise BaseImageError(f"no static busybox for {p.debian_arch} in {directory}: run scripts/setup") from None


def _busybox_source(p: Platform, deb_sha256: str) -> str:
    return f"busybox-static:{p.debian_arch} deb sha256:{deb_sha256} as {p.oci}"


def ensure_busybox(client: docker.DockerClient, mirror: Registry,
                   platforms: tuple[Platform, ...] = BUSYBOX_PLATFORMS) -> dict[str, Member]:
    """library/busybox:<name> for each of `platforms` and :latest listing them (an OCI index when
    the engine pushed OCI manifests, as on the containerd image store); by platform name."""
    registry = RegistryClient(mirror.host)
    members = {}
    for p in platforms:
        binary, deb_sha256 = busybox_binary(p)
        wanted = BaseImage(BUSYBOX_REPO, p.name, p, _busybox_source(p, deb_sha256), SOURCE_LABEL)
        files = {"Dockerfile": BUSYBOX_DOCKERFILE.encode(),
                 "build-platform": (p.oci + "\n").encode(), "busybox": binary}
        members[p.name], _ = ensure_image(client, registry, wanted, files)
    ensure_list(registry, BUSYBOX_REPO, "latest", list(members.values()))
    return members


def ensure_debian(client: docker.DockerClient, mirror: Registry) -> dict[str, Member]:
    """library/debian:trixie (amd64) from the rootfs tarball scripts/setup cached, as the product makes it."""
    return bases.ensure_debian(client, RegistryClient(mirror.host), "trixie", False, (platform("amd64"),),
                               cache_dir() / "debian", out=io.StringIO())


def main(argv: list[str]) -> int:
    if argv == ["debian-arches"]:
        print("\n".join(dict.fromkeys(p.debian_arch for p in BUSYBOX_PLATFORMS)))
        return 0
    if len(argv) == 2 and argv[0] == "seed":
        host = argv[1]
        try:
            ensure_busybox(docker.from_env(), Registry(host, f"http://{host}", Path()))
        except BuilderError as error:
            print(f"seed: {error}", file=sys.stderr)
            return 1
        print(f"{host}/{BUSYBOX_REPO}:latest holds busybox for "
              f"{', '.join(p.name for p in BUSYBOX_PLATFORMS)}")
        return 0
    print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
