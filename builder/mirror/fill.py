"""Filling the source mirror: fetch each version's tarball (and signature and key) from a
provider, verify it against versions.yaml, and only then move it into the tree.

Providers:
- DebianArchive (builder.mirror.debian): Debian's source archive, its index through apt or
  its pool through the upload's signed .dsc.
- UpstreamURL: any tree in python.org's layout (python.org itself, another mirror, another
  instance of this one), keys from `keys_url` or the mirror itself.

Whatever the provider, the file must have versions.yaml's sha256 and, for a signed series, a
good signature by the key with versions.yaml's fingerprint. Every write is atomic and happens
after all of a version's checks, so a refused version leaves the mirror as it was.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import requests

from builder.model.errors import BuilderError, InputError
from builder.model.files import copy_atomic, write_atomic
from builder.model.versions import Family
from builder.mirror import layout
from builder.mirror.verify import check_sha256, check_signature, export_key, sha256_file



@dataclass(frozen=True)
class Wanted:
    """What one version needs in the mirror, from versions.yaml."""
    version: str  # "3.13.5"
    sha256: str  # of Python-3.13.5.tar.xz
    fingerprint: str | None  # the release manager's key; None: the series is not signed (PEP 761)


@dataclass(frozen=True)
class Fetched:
    """A provider's download, not yet verified."""
    tarball: Path
    signature: Path | None
    key_file: Path | None  # a file holding the key (and maybe others)
    origin: str  # where it came from, for the output: "Debian python3.13 3.13.5-2+deb13u5"
    chain: tuple[str, ...] = ()  # what the provider checked it by: "Debian's signed index (apt)"


@dataclass(frozen=True)
class Accepted:
    """A version `fill` put into the mirror, and every check that vouched for it."""
    version: str
    origin: str
    chain: tuple[str, ...]  # ("Debian-signed .dsc …", "versions.yaml sha256", "upstream signature …")


class Provider(Protocol):
    def fetch(self, wanted: Wanted) -> Fetched: ...


def wanted_versions(family: Family, only: tuple[str, ...] = ()) -> tuple[list[Wanted], list[str]]:
    """The versions to fill and those left out for want of a sha256 (nothing could verify them).

    Versions named in `only` (full version or series) must have one.
    """
    chosen = [family.version(v) for v in only] if only else list(family.versions)
    wanted, skipped = [], []
    for version in chosen:
        if version.sha256 is None:
            if only:
                raise InputError(f"{version.full} has no sha256: nothing could verify its "
                                 "tarball; add it to the version's entry", source=family.source,
                                 field="sha256")
            skipped.append(version.full)
        else:
            wanted.append(Wanted(version.full, version.sha256, version.gpg_key))
    return wanted, skipped


def fill(directory: Path, wanted: list[Wanted], provider: Provider,
         out: TextIO | None = None) -> list[Accepted]:
    """Put every wanted version into the mirror at `directory`; returns those added.

    A version already there and still verifying is left alone. The first refusal raises
    VerificationError (exit 1) after the versions before it went in.
    """
    out = out or sys.stdout
    added = []
    for item in wanted:
        if _present(directory, item):
            print(f"{layout.tarball_path(item.version)}: up to date", file=out)
            continue
        fetched = provider.fetch(item)
        key = _verified(directory, item, fetched)
        copy_atomic(fetched.tarball, directory / layout.tarball_path(item.version))
        if item.fingerprint:
            copy_atomic(fetched.signature, directory / layout.signature_path(item.version))
            write_atomic(directory / layout.key_path(item.fingerprint), key)
        chain = fetched.chain + (f"versions.yaml sha256 {item.sha256[:12]}…",) + (
            (f"upstream signature by {item.fingerprint}",) if item.fingerprint else ())
        print(f"{layout.tarball_path(item.version)}: added from {fetched.origin}, accepted by "
              f"{'; '.join(chain)}", file=out)
        added.append(Accepted(item.version, fetched.origin, chain))
    return added


def _present(directory: Path, item: Wanted) -> bool:
    tarball = directory / layout.tarball_path(item.version)
    if not tarball.is_file() or sha256_file(tarball) != item.sha256:
        return False
    if item.fingerprint is None:
        return True
    signature = directory / layout.signature_path(item.version)
    key = directory / layout.key_path(item.fingerprint)
    if not (signature.is_file() and key.is_file()):
        return False
    try:
        check_signature(tarball, signature, key.read_bytes(), item.fingerprint, tarball.name)
    except BuilderError:
        return False
    return True


def _verified(directory: Path, item: Wanted, fetched: Fetched) -> bytes | None:
    """The armored key, once the tarball, the key and the signature all passed."""
    name = layout.tarball_path(item.version)
    check_sha256(fetched.tarball, item.sha256, name)
    if item.fingerprint is None:
        return None
    if fetched.signature is None:
        raise BuilderError(f"{name}: versions.yaml names key {item.fingerprint}, but "
                           f"{fetched.origin} has no signature for it; refused")
    key_file = fetched.key_file
    if key_file is None:
        key_file = directory / layout.key_path(item.fingerprint)
        if not key_file.is_file():
            raise BuilderError(f"{name}: no key {item.fingerprint}: fill from Debian's archive "
                               "first (its source package carries the key), or give keys_url")
    key = export_key(key_file, item.fingerprint, name)
    check_signature(fetched.tarball, fetched.signature, key, item.fingerprint, name)
    return key


# --- an upstream-layout URL ----------------------------------------------------------------

class UpstreamURL:
    """A tree in python.org's layout: `<base>/3.13.5/Python-3.13.5.tar.xz` and its `.asc`.

    Keys come from `keys_url` (`<keys_url><FINGERPRINT>.asc`, as this mirror serves them), or
    from the mirror itself when an earlier fill put the key there.
    """

    def __init__(self, base: str, work: Path, keys_url: str | None = None) -> None:
        self.base = base.rstrip("/") + "/"
        self.keys_url = keys_url.rstrip("/") + "/" if keys_url else None
        self.downloads = work / "downloads" / "url"

    def fetch(self, wanted: Wanted) -> Fetched:
        release = layout.release_directory(wanted.version)
        target = self.downloads / release
        url = f"{self.base}{release}/{layout.tarball_name(wanted.version)}"
        tarball = download(url, target / layout.tarball_name(wanted.version), required=True)
        signature = download(url + ".asc", target / (layout.tarball_name(wanted.version) + ".asc"))
        key_file = None
        if wanted.fingerprint and self.keys_url:
            key_file = download(f"{self.keys_url}{wanted.fingerprint}.asc",
                                 target / f"{wanted.fingerprint}.asc")
        return Fetched(tarball, signature, key_file, origin=url)


def download(url: str, path: Path, required: bool = False) -> Path | None:
    """Download `url` to `path`; None on a 404 unless `required`."""
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            if response.status_code == 404 and not required:
                return None
            response.raise_for_status()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as stream:
                for block in response.iter_content(1 << 20):
                    stream.write(block)
    except requests.RequestException as error:
        raise BuilderError(f"GET {url}: {error}") from None
    return path
