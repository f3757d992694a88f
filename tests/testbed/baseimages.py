"""Base images made on this machine and pushed to the mirror registry, standing in for Docker Hub.

- ``library/busybox:<platform name>``: FROM scratch + Debian's static busybox, one per platform,
  and ``library/busybox:latest``, the Docker manifest list of them.
- ``library/debian:trixie``: an mmdebstrap minbase rootfs (amd64), `docker import`ed.

scripts/setup fetches the inputs into the cache; this module builds, checks and pushes. Each image
carries a ``testbed.source`` label naming its input's SHA256, so a mirror that already holds the
same inputs is left alone.

    python -m testbed.baseimages debian-arches   # the dpkg architectures scripts/setup fetches
    python -m testbed.baseimages seed HOST       # push library/busybox to the plain registry HOST
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from builder.errors import InputError
from builder.platforms import Platform, from_oci, platform

from .paths import cache_dir
from .registry import Registry

BUSYBOX_PLATFORMS: tuple[Platform, ...] = tuple(
    platform(name) for name in
    ("amd64", "arm32v5", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x"))
BUSYBOX_REPO = "library/busybox"
DEBIAN_REPO, DEBIAN_TAG = "library/debian", "trixie"
SOURCE_LABEL = "testbed.source"

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

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


class BaseImageError(RuntimeError):
    """A base image could not be made; the message says which and what to do."""


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int
    media_type: str = MANIFEST


def busybox_binary(p: Platform) -> tuple[Path, str]:
    """The cached static busybox for `p` and the SHA256 of the .deb it came from."""
    directory = cache_dir() / "busybox" / p.debian_arch
    try:
        return directory / "busybox", (directory / "deb.sha256").read_text().strip()
    except FileNotFoundError:
        raise BaseImageError(f"no static busybox for {p.debian_arch} in {directory}: run scripts/setup") from None


def debian_rootfs() -> tuple[Path, str]:
    tarball = cache_dir() / "debian" / "trixie-minbase-amd64.tar"
    try:
        return tarball, Path(f"{tarball}.sha256").read_text().strip()
    except FileNotFoundError:
        raise BaseImageError(f"no Debian rootfs tarball at {tarball}: run scripts/setup") from None


def _busybox_source(p: Platform, deb_sha256: str) -> str:
    return f"busybox-static:{p.debian_arch} deb sha256:{deb_sha256} as {p.oci}"


# --- registry reads (exact bytes, so digests and sizes are the registry's own) -------------

def _manifest(mirror: Registry, repo: str, reference: str, accept: str) -> tuple[bytes, dict] | None:
    response = mirror.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.content, response.json()


def _descriptor(body: bytes) -> Descriptor:
    return Descriptor("sha256:" + hashlib.sha256(body).hexdigest(), len(body))


def _config(mirror: Registry, repo: str, manifest: dict) -> dict:
    response = mirror.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    response.raise_for_status()
    return response.json()


def _pushed_image(mirror: Registry, repo: str, tag: str, p: Platform, source: str) -> Descriptor | None:
    """The descriptor of repo:tag if it is an image of platform `p` made from `source`, else None."""
    found = _manifest(mirror, repo, tag, MANIFEST)
    if found is None or found[1].get("mediaType") != MANIFEST:
        return None
    config = _config(mirror, repo, found[1])
    labels = (config.get("config") or {}).get("Labels") or {}
    if labels.get(SOURCE_LABEL) != source:
        return None
    if not p.matches(config.get("os", ""), config.get("architecture", ""), config.get("variant")):
        return None
    return _descriptor(found[0])


# --- engine side ---------------------------------------------------------------------------

def check_platform(client: docker.DockerClient, reference: str, p: Platform) -> None:
    attrs = client.images.get(reference).attrs
    got = (attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant"))
    if not p.matches(*got):
        shown = "/".join(x for x in got if x)
        raise BaseImageError(f"{reference}: built as {shown}, wanted {p.oci} (classic builder cache?)")


def _push(client: docker.DockerClient, repository: str, tag: str) -> None:
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise BaseImageError(f"push {repository}:{tag}: {chunk['error']}")


def _build_busybox(client: docker.DockerClient, reference: str, p: Platform, source: str) -> None:
    binary, _ = busybox_binary(p)
    with tempfile.TemporaryDirectory(prefix="busybox-context-") as context:
        root = Path(context)
        (root / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
        (root / "build-platform").write_text(p.oci + "\n")
        (root / "busybox").write_bytes(binary.read_bytes())
        (root / "busybox").chmod(0o755)
        log = []
        for chunk in client.api.build(path=context, tag=reference, platform=p.oci, buildargs={"SOURCE": source},
                                      rm=True, forcerm=True, decode=True):
            log.append(chunk.get("stream", ""))
            if "error" in chunk:
                raise BaseImageError(f"build {reference} ({p.oci}): {chunk['error']}\n{''.join(log)[-2000:]}")
    check_platform(client, reference, p)


def _put_manifest_list(mirror: Registry, repo: str, tag: str,
                       entries: list[tuple[Platform, Descriptor]]) -> Descriptor:
    manifests = []
    for p, d in sorted(entries, key=lambda e: e[0].sort_key()):
        entry_platform = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            entry_platform["variant"] = p.variant
        manifests.append({"mediaType": d.media_type, "size": d.size, "digest": d.digest,
                          "platform": entry_platform})
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_LIST, "manifests": manifests},
                      indent=3).encode()
    response = requests.put(
        f"{mirror.url}/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": MANIFEST_LIST},
        auth=mirror.auth, verify=mirror.verify, timeout=30)
    if response.status_code != 201:
        raise BaseImageError(f"PUT {repo}:{tag} manifest list: {response.status_code} {response.text[:500]}")
    descriptor = _descriptor(body)
    if response.headers.get("Docker-Content-Digest") != descriptor.digest:
        raise BaseImageError(f"PUT {repo}:{tag}: registry digest {response.headers.get('Docker-Content-Digest')} "
                             f"is not the digest of what we sent, {descriptor.digest}")
    return descriptor


def _list_matches(mirror: Registry, repo: str, tag: str, entries: list[tuple[Platform, Descriptor]]) -> bool:
    found = _manifest(mirror, repo, tag, MANIFEST_LIST)
    if found is None or found[1].get("mediaType") != MANIFEST_LIST:
        return False
    have = set()
    for m in found[1].get("manifests", []):
        fields = m.get("platform", {})
        try:
            name = from_oci(fields.get("os", ""), fields.get("architecture", ""), fields.get("variant")).name
        except InputError:
            return False
        have.add((name, m.get("digest")))
    return have == {(p.name, d.digest) for p, d in entries}


def ensure_busybox(client: docker.DockerClient, mirror: Registry) -> dict[str, Descriptor]:
    """library/busybox:<name> for every BUSYBOX_PLATFORMS entry and :latest listing them; by platform name."""
    entries = []
    for p in BUSYBOX_PLATFORMS:
        _, deb_sha256 = busybox_binary(p)
        source = _busybox_source(p, deb_sha256)
        descriptor = _pushed_image(mirror, BUSYBOX_REPO, p.name, p, source)
        if descriptor is None:
            reference = f"{mirror.host}/{BUSYBOX_REPO}:{p.name}"
            _build_busybox(client, reference, p, source)
            _push(client, f"{mirror.host}/{BUSYBOX_REPO}", p.name)
            descriptor = _pushed_image(mirror, BUSYBOX_REPO, p.name, p, source)
            if descriptor is None:
                raise BaseImageError(f"{reference}: pushed, but the mirror does not hold it as {p.oci}")
        entries.append((p, descriptor))
    if not _list_matches(mirror, BUSYBOX_REPO, "latest", entries):
        _put_manifest_list(mirror, BUSYBOX_REPO, "latest", entries)
    return {p.name: d for p, d in entries}


def ensure_debian(client: docker.DockerClient, mirror: Registry) -> Descriptor:
    """library/debian:trixie from the cached mmdebstrap tarball, imported only when the mirror lacks it."""
    amd64 = platform("amd64")
    tarball, sha256 = debian_rootfs()
    source = f"mmdebstrap trixie minbase amd64 tar sha256:{sha256}"
    descriptor = _pushed_image(mirror, DEBIAN_REPO, DEBIAN_TAG, amd64, source)
    if descriptor is not None:
        return descriptor
    repository = f"{mirror.host}/{DEBIAN_REPO}"
    output = client.api.import_image_from_file(str(tarball), repository=repository, tag=DEBIAN_TAG,
                                               changes=[f'LABEL {SOURCE_LABEL}="{source}"', 'CMD ["bash"]'])
    if '"error"' in output:
        raise BaseImageError(f"docker import {tarball}: {output[-500:]}")
    check_platform(client, f"{repository}:{DEBIAN_TAG}", amd64)
    _push(client, repository, DEBIAN_TAG)
    descriptor = _pushed_image(mirror, DEBIAN_REPO, DEBIAN_TAG, amd64, source)
    if descriptor is None:
        raise BaseImageError(f"{repository}:{DEBIAN_TAG}: pushed, but the mirror does not hold it with its label")
    return descriptor


def main(argv: list[str]) -> int:
    if argv == ["debian-arches"]:
        print("\n".join(dict.fromkeys(p.debian_arch for p in BUSYBOX_PLATFORMS)))
        return 0
    if len(argv) == 2 and argv[0] == "seed":
        host = argv[1]
        try:
            ensure_busybox(docker.from_env(), Registry(host, f"http://{host}", Path()))
        except BaseImageError as error:
            print(f"seed: {error}", file=sys.stderr)
            return 1
        print(f"{host}/{BUSYBOX_REPO}:latest holds busybox for "
              f"{', '.join(p.name for p in BUSYBOX_PLATFORMS)}")
        return 0
    print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
