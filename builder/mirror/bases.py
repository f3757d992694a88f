"""Base images made on this machine and pushed to the base mirror, standing in for Docker Hub.

`debian:<suite>` and `debian:<suite>-slim` (trixie, bookworm): an `mmdebstrap
--variant=minbase` rootfs per platform, the slim one with the path excludes of Debian's slim
images (docs but their copyright files, info, man pages, locales, lintian overrides), put in
FROM scratch and built with the job's platform (`docker import` would label every one amd64).
Each per-platform image is pushed as `library/debian:<tag>-<platform>`, then one manifest list
`library/debian:<tag>` holds them.

Each image carries the label org.python-image-builder.source naming its rootfs tarball's
sha256; the tarballs are cached, so a second fill finds every image up to date in the mirror
and builds nothing. The test bed's busybox images go through the same registry helpers.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import requests

from builder.model.errors import BuilderError, InputError
from builder.model.platforms import Platform, from_oci

SOURCE_LABEL = "org.python-image-builder.source"
DEBIAN_REPO = "library/debian"
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

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
    """A base image could not be made or pushed; the message says which and why."""


class Mirror(Protocol):
    """A registry to read from and write to: `BaseMirror`, or the test bed's Registry."""
    host: str
    url: str
    auth: tuple[str, str] | None
    verify: str | bool

    def get(self, path: str, **kwargs) -> requests.Response: ...


@dataclass(frozen=True)
class BaseMirror:
    """A plain-HTTP loopback registry (`invoke registry`), the base mirror a fill writes to."""
    host: str  # "127.0.0.1:5000"
    auth: tuple[str, str] | None = None
    verify: str | bool = True

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.get(self.url + path, verify=self.verify, timeout=30, **kwargs)


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int
    media_type: str = MANIFEST


@dataclass(frozen=True)
class Rootfs:
    suite: str
    platform: Platform
    slim: bool
    tarball: Path
    sha256: str

    @property
    def tag(self) -> str:
        return self.suite + ("-slim" if self.slim else "")

    @property
    def source(self) -> str:
        apt_conf = hashlib.sha256(DOCKER_APT_CONF.encode()).hexdigest()[:12]
        return (f"mmdebstrap {self.suite} minbase{' slim' if self.slim else ''} "
                f"{self.platform.debian_arch} tar sha256:{self.sha256} apt.conf {apt_conf}")


# --- registry reads and writes (exact bytes, so digests and sizes are the registry's own) ---

def _manifest(mirror: Mirror, repo: str, reference: str, accept: str) -> tuple[bytes, dict] | None:
    response = mirror.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.content, response.json()


def _descriptor(body: bytes) -> Descriptor:
    return Descriptor("sha256:" + hashlib.sha256(body).hexdigest(), len(body))


def pushed_image(mirror: Mirror, repo: str, tag: str, p: Platform, source: str,
                 label: str = SOURCE_LABEL) -> Descriptor | None:
    """The descriptor of repo:tag if it is an image of platform `p` labelled as made from
    `source`, else None (missing, another platform, or made from something else)."""
    found = _manifest(mirror, repo, tag, MANIFEST)
    if found is None or found[1].get("mediaType") != MANIFEST:
        return None
    response = mirror.get(f"/v2/{repo}/blobs/{found[1]['config']['digest']}")
    response.raise_for_status()
    config = response.json()
    labels = (config.get("config") or {}).get("Labels") or {}
    if labels.get(label) != source:
        return None
    if not p.matches(config.get("os", ""), config.get("architecture", ""), config.get("variant")):
        return None
    return _descriptor(found[0])


def check_platform(client, reference: str, p: Platform) -> None:
    """The engine's image must be of platform `p` (the classic builder's cache can hand back
    another platform's image)."""
    attrs = client.images.get(reference).attrs
    got = (attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant"))
    if not p.matches(*got):
        shown = "/".join(x for x in got if x)
        raise BaseImageError(f"{reference}: built as {shown}, wanted {p.oci} (classic builder cache?)")


def push(client, repository: str, tag: str) -> None:
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise BaseImageError(f"push {repository}:{tag}: {chunk['error']}")


def ensure_list(mirror: Mirror, repo: str, tag: str, entries: list[tuple[Platform, Descriptor]]) -> bool:
    """Make repo:tag the Docker manifest list of `entries` unless it already is; True if written."""
    if _list_matches(mirror, repo, tag, entries):
        return False
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
    digest = _descriptor(body).digest
    if response.headers.get("Docker-Content-Digest") != digest:
        raise BaseImageError(f"PUT {repo}:{tag}: registry digest {response.headers.get('Docker-Content-Digest')} "
                             f"is not the digest of what we sent, {digest}")
    return True


def _list_matches(mirror: Mirror, repo: str, tag: str, entries: list[tuple[Platform, Descriptor]]) -> bool:
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


def build_from_scratch(client, context: Path, reference: str, p: Platform, source: str) -> None:
    """Build the FROM scratch image in `context` for platform `p`, checking what came out."""
    log = []
    for chunk in client.api.build(path=str(context), tag=reference, platform=p.oci,
                                  buildargs={"SOURCE": source}, rm=True, forcerm=True, decode=True):
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            raise BaseImageError(f"build {reference} ({p.oci}): {chunk['error']}\n{''.join(log)[-2000:]}")
    check_platform(client, reference, p)


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


def ensure_debian(client, mirror: Mirror, suite: str, slim: bool, platforms: tuple[Platform, ...],
                  cache: Path, out: TextIO | None = None) -> dict[str, Descriptor]:
    """library/debian:<suite>[-slim] for `platforms` in the mirror; builds only what it lacks."""
    out = out or sys.stdout
    entries = []
    for p in platforms:
        made = rootfs(cache, suite, p, slim, out)
        tag = f"{made.tag}-{p.name}"
        descriptor = pushed_image(mirror, DEBIAN_REPO, tag, p, made.source)
        if descriptor is None:
            reference = f"{mirror.host}/{DEBIAN_REPO}:{tag}"
            with tempfile.TemporaryDirectory(prefix="debian-context-", dir=cache) as context:
                root = Path(context)
                (root / "Dockerfile").write_text(DEBIAN_DOCKERFILE)
                (root / "docker-apt.conf").write_text(DOCKER_APT_CONF)
                os.link(made.tarball, root / "rootfs.tar")  # same directory tree: no copy
                build_from_scratch(client, root, reference, p, made.source)
            push(client, f"{mirror.host}/{DEBIAN_REPO}", tag)
            descriptor = pushed_image(mirror, DEBIAN_REPO, tag, p, made.source)
            if descriptor is None:
                raise BaseImageError(f"{reference}: pushed, but the mirror does not hold it as {p.oci}")
            print(f"{DEBIAN_REPO}:{tag}: built and pushed", file=out)
        else:
            print(f"{DEBIAN_REPO}:{tag}: up to date", file=out)
        entries.append((p, descriptor))
    written = ensure_list(mirror, DEBIAN_REPO, made.tag, entries)
    print(f"{mirror.host}/{DEBIAN_REPO}:{made.tag}: {'written' if written else 'up to date'} "
          f"({', '.join(p.name for p in platforms)})", file=out)
    return {p.name: d for p, d in entries}
