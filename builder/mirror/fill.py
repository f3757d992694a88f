"""Filling the source mirror: fetch each version's tarball (and signature and key) from a
provider, verify it against versions.yaml, and only then move it into the tree.

Providers:
- DebianArchive: Debian's source archive through a private apt configuration (deb-src lines,
  its own lists and cache under the mirror's .work/), `apt-get source --download-only`.
  Debian's .orig.tar.xz is upstream's tarball; the key is the source package's
  debian/upstream/signing-key.asc. apt checks each file against the archive's signed Sources.
  A release the index no longer lists (a newer upload replaced it) often still lies in the
  pool: it is fetched from there, with the key from a listed upload of the same series.
- UpstreamURL: any tree in python.org's layout (python.org itself, another mirror, another
  instance of this one), keys from `keys_url` or the mirror itself.

Whatever the provider, the file must have versions.yaml's sha256 and, for a signed series, a
good signature by the key with versions.yaml's fingerprint. Every write is atomic and happens
after all of a version's checks, so a refused version leaves the mirror as it was.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import requests

from builder.model.errors import BuilderError, InputError
from builder.model.files import copy_atomic, write_atomic
from builder.model.versions import Family
from builder.mirror import layout
from builder.mirror.verify import check_sha256, check_signature, export_key, sha256_file

DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
DEBIAN_SOURCE_SUITES = ("bookworm", "trixie", "unstable")
SIGNING_KEY_MEMBER = "debian/upstream/signing-key.asc"


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


def fill(directory: Path, wanted: list[Wanted], provider: Provider, out: TextIO | None = None) -> int:
    """Put every wanted version into the mirror at `directory`; returns how many were added.

    A version already there and still verifying is left alone. The first refusal raises
    VerificationError (exit 1) after the versions before it went in.
    """
    out = out or sys.stdout
    added = 0
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
        print(f"{layout.tarball_path(item.version)}: added from {fetched.origin} (sha256 "
              f"{item.sha256[:12]}…{', signature good' if item.fingerprint else ''})", file=out)
        added += 1
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


# --- Debian's source archive ---------------------------------------------------------------

def apt_config_text(root: Path) -> str:
    """A private apt configuration: its own sources, lists and cache; the system's untouched."""
    return "".join(f'{key} "{value}";\n' for key, value in (
        ("Dir::Etc::SourceList", root / "sources.list"),
        ("Dir::Etc::SourceParts", "/nonexistent"),
        ("Dir::State::Lists", root / "lists"),
        ("Dir::Cache", root / "cache"),
        ("Dir::Cache::archives", root / "archives"),
        # Downloads run as root into our own directories; apt's _apt sandbox could not write them.
        ("APT::Sandbox::User", "root"),
    ))


def sources_list_text(archive: str, suites: tuple[str, ...]) -> str:
    return "".join(f"deb-src {archive} {suite} main\n" for suite in suites)


@dataclass(frozen=True)
class SourceEntry:
    package: str
    version: str  # Debian's: "3.13.5-2+deb13u5"
    files: tuple[tuple[str, str], ...]  # (name, sha256) from Checksums-Sha256


def parse_showsrc(text: str) -> list[SourceEntry]:
    """`apt-cache showsrc` output → its source stanzas."""
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line:
                current, _, value = line.partition(":")
                fields[current] = value.strip()
        if "Package" in fields and "Version" in fields:
            files = tuple((parts[2], parts[0]) for parts in
                          (row.split() for row in fields.get("Checksums-Sha256", "").splitlines())
                          if len(parts) == 3)
            entries.append(SourceEntry(fields["Package"], fields["Version"], files))
    return entries


def choose_source(entries: list[SourceEntry], version: str) -> SourceEntry | None:
    """The source package holding upstream's `version` as its orig tarball, preferring one that
    also holds the signature."""
    orig = layout.debian_orig_name(version)
    holding = [e for e in entries if orig in dict(e.files)]
    signed = [e for e in holding if orig + ".asc" in dict(e.files)]
    return (signed or holding or [None])[0]


class DebianArchive:
    """Debian's source archive: `apt-get source --download-only` with a private APT_CONFIG."""

    def __init__(self, work: Path, archive: str = DEBIAN_ARCHIVE,
                 suites: tuple[str, ...] = DEBIAN_SOURCE_SUITES) -> None:
        self.root = work / "apt"
        self.downloads = work / "downloads"
        self.archive, self.suites = archive, suites
        self._updated = False

    def fetch(self, wanted: Wanted) -> Fetched:
        package = layout.debian_source_package(wanted.version)
        self._update()
        entries = parse_showsrc(self._apt("apt-cache", "showsrc", package, check=False))
        entry = choose_source(entries, wanted.version)
        if entry is None:
            return self._from_pool(wanted, entries)
        target = self.downloads / f"{package}_{entry.version}"
        target.mkdir(parents=True, exist_ok=True)
        # apt skips files already downloaded whose hashes match: a warm fill downloads nothing.
        self._apt("apt-get", "source", "--download-only", f"{package}={entry.version}", cwd=target)
        orig = target / layout.debian_orig_name(wanted.version)
        signature = Path(f"{orig}.asc")
        debian_tar = next(target.glob(f"{package}_*.debian.tar.*"), None)
        return Fetched(tarball=orig, signature=signature if signature.is_file() else None,
                       key_file=_signing_key(debian_tar, target) if debian_tar else None,
                       origin=f"Debian {package} {entry.version}")

    def _from_pool(self, wanted: Wanted, entries: list[SourceEntry]) -> Fetched:
        """The release straight from the pool, outside the index: versions.yaml's sha256 (and
        the signature) are then the only checks, as for any other provider."""
        pool = f"{self.archive}/{layout.debian_pool_directory(wanted.version)}"
        orig = layout.debian_orig_name(wanted.version)
        target = self.downloads / "pool"
        tarball = download(f"{pool}/{orig}", target / orig)
        if tarball is None:
            raise BuilderError(f"{layout.tarball_path(wanted.version)}: Debian's archive "
                               f"({', '.join(self.suites)}) has no {orig}, neither in its index "
                               f"nor in {pool}/; fill it from an upstream-layout URL instead")
        signature = download(f"{pool}/{orig}.asc", target / f"{orig}.asc")
        key_file = None
        if wanted.fingerprint:
            key_file = self._listed_signing_key(pool, entries, target)
        return Fetched(tarball=tarball, signature=signature, key_file=key_file,
                       origin=f"Debian's pool {pool}/ (not in the index)")

    def _listed_signing_key(self, pool: str, entries: list[SourceEntry], target: Path) -> Path | None:
        """The series' signing key from the packaging tarball of an upload the index lists,
        checked against the index's sha256 (the key must still carry versions.yaml's
        fingerprint, which `fill` checks)."""
        for entry in entries:
            for name, sha256 in entry.files:
                if ".debian.tar." not in name:
                    continue
                debian_tar = download(f"{pool}/{name}", target / name)
                if debian_tar is not None and sha256_file(debian_tar) == sha256:
                    found = _signing_key(debian_tar, target)
                    if found:
                        return found
        return None

    def _update(self) -> None:
        if self._updated:
            return
        for sub in ("lists/partial", "cache", "archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "apt.conf").write_text(apt_config_text(self.root))
        (self.root / "sources.list").write_text(sources_list_text(self.archive, self.suites))
        self._apt("apt-get", "update", "-qq")
        self._updated = True

    def _apt(self, *argv: str, cwd: Path | None = None, check: bool = True) -> str:
        env = dict(os.environ, APT_CONFIG=str(self.root / "apt.conf"))
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        if check and result.returncode != 0:
            tail = "; ".join(result.stderr.strip().splitlines()[-3:])
            raise BuilderError(f"{' '.join(argv)} (APT_CONFIG={self.root / 'apt.conf'}) failed: {tail}")
        return result.stdout


def _signing_key(debian_tar: Path, target: Path) -> Path | None:
    """debian/upstream/signing-key.asc out of the packaging tarball, or None if it has none."""
    with tarfile.open(debian_tar) as archive:
        try:
            member = archive.getmember(SIGNING_KEY_MEMBER)
        except KeyError:
            return None
        data = archive.extractfile(member).read()
    path = target / "signing-key.asc"
    path.write_bytes(data)
    return path


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
