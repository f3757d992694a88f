"""Debian's source archive as a provider of upstream's tarballs.

Debian's .orig.tar.xz is upstream's tarball; the key is the source package's
debian/upstream/signing-key.asc. Two chains vouch for a file:
- the index: `apt-get source --download-only` through a private apt configuration (deb-src
  lines, its own lists and cache under the mirror's .work/); apt checks each file against the
  archive's signed Sources;
- the upload: a release the index no longer lists (a newer upload replaced it) often still
  lies in the pool, with the .dsc its uploader signed. gpgv checks that signature against
  Debian's keyrings (the debian-keyring package), and the signed Checksums-Sha256 must name
  the orig tarball with the sha256 the download has.
"""
from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.model.errors import BuilderError, VerificationError
from builder.mirror import deb822, layout
from builder.mirror.fill import Fetched, Wanted, download
from builder.mirror.verify import check_dsc, sha256_file

DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
DEBIAN_SOURCE_SUITES = ("bookworm", "trixie", "unstable")
SIGNING_KEY_MEMBER = "debian/upstream/signing-key.asc"
INDEX_CHAIN = "Debian's signed index (apt)"


@dataclass(frozen=True)
class SignedUpload:
    """A .dsc whose signature verified and whose Checksums-Sha256 names the tarball as it is."""
    dsc: str  # "python3.14_3.14.7-1.dsc"
    signer: str  # "Matthias Klose <doko@debian.org> (D56571B8…)"
    sha256: str  # of the orig tarball, as the .dsc names it and the download has it

    @property
    def chain(self) -> str:
        return f"Debian-signed .dsc {self.dsc} (signed by {self.signer})"


def pool_url(archive: str, version: str) -> str:
    return f"{archive}/{layout.debian_pool_directory(version)}"


def signed_upload(pool: str, version: str, tarball: Path, entries: list[deb822.SourceEntry],
                  target: Path) -> SignedUpload | None:
    """The upload of `version` in the pool vouching for `tarball`; None when the pool holds no
    .dsc of it. A .dsc that is there but fails (its signature, its package, its checksum of
    the tarball) is refused: VerificationError."""
    name = deb822.dsc_name(version, entries)
    dsc = download(f"{pool}/{name}", target / name)
    if dsc is None:
        return None
    where = f"{pool}/{name}"
    text, signer = check_dsc(dsc, layout.tarball_path(version))
    entry = deb822.parse_dsc(text)
    orig = layout.debian_orig_name(version)
    if entry is None or entry.package != layout.debian_source_package(version) or \
            orig not in dict(entry.files):
        raise VerificationError(f"{where}: its signed part names no {orig} of source "
                                f"{layout.debian_source_package(version)}; refused")
    found = sha256_file(tarball)
    if dict(entry.files)[orig] != found:
        raise VerificationError(f"{where}: names {orig} with sha256 {dict(entry.files)[orig]}, "
                                f"but the download has {found}; refused, nothing written")
    return SignedUpload(name, signer, found)


class DebianArchive:
    """Debian's source archive: its index through apt, else its pool through a signed .dsc."""

    def __init__(self, work: Path, archive: str = DEBIAN_ARCHIVE,
                 suites: tuple[str, ...] = DEBIAN_SOURCE_SUITES) -> None:
        self.root = work / "apt"
        self.downloads = work / "downloads"
        self.archive, self.suites = archive, suites
        self._updated = False

    def entries(self, version: str) -> list[deb822.SourceEntry]:
        """The index's uploads of `version`'s source package (every suite)."""
        self._update()
        package = layout.debian_source_package(version)
        return deb822.parse_showsrc(self._apt("apt-cache", "showsrc", package, check=False))

    def fetch(self, wanted: Wanted) -> Fetched:
        package = layout.debian_source_package(wanted.version)
        entries = self.entries(wanted.version)
        entry = deb822.choose_source(entries, wanted.version)
        if entry is None:
            return self.from_pool(wanted, entries)
        target = self.downloads / f"{package}_{entry.version}"
        target.mkdir(parents=True, exist_ok=True)
        # apt skips files already downloaded whose hashes match: a warm fill downloads nothing.
        self._apt("apt-get", "source", "--download-only", f"{package}={entry.version}", cwd=target)
        orig = target / layout.debian_orig_name(wanted.version)
        signature = Path(f"{orig}.asc")
        debian_tar = next(target.glob(f"{package}_*.debian.tar.*"), None)
        return Fetched(tarball=orig, signature=signature if signature.is_file() else None,
                       key_file=_signing_key(debian_tar, target) if debian_tar else None,
                       origin=f"Debian {package} {entry.version}", chain=(INDEX_CHAIN,))

    def from_pool(self, wanted: Wanted, entries: list[deb822.SourceEntry]) -> Fetched:
        """The release straight from the pool, outside the index. Its signed .dsc must vouch
        for it, unless the series is signed and the upstream signature does (which `fill`
        checks with versions.yaml's key); versions.yaml's sha256 is checked either way."""
        pool = pool_url(self.archive, wanted.version)
        orig = layout.debian_orig_name(wanted.version)
        target = self.downloads / "pool"
        tarball = download(f"{pool}/{orig}", target / orig)
        if tarball is None:
            raise BuilderError(f"{layout.tarball_path(wanted.version)}: Debian's archive "
                               f"({', '.join(self.suites)}) has no {orig}, neither in its index "
                               f"nor in {pool}/; fill it from an upstream-layout URL instead")
        upload = signed_upload(pool, wanted.version, tarball, entries, target)
        if upload is None and not wanted.fingerprint:
            raise VerificationError(
                f"{layout.tarball_path(wanted.version)}: {pool}/{orig} is in no index and the "
                f"pool has no {deb822.dsc_name(wanted.version, entries)} to vouch for it; "
                "refused, the mirror is unchanged")
        signature = download(f"{pool}/{orig}.asc", target / f"{orig}.asc")
        key_file = self.listed_signing_key(pool, entries, target) if wanted.fingerprint else None
        return Fetched(tarball=tarball, signature=signature, key_file=key_file,
                       origin=f"Debian's pool {pool}/ (not in the index)",
                       chain=(upload.chain,) if upload else ())

    def listed_signing_key(self, pool: str, entries: list[deb822.SourceEntry],
                           target: Path) -> Path | None:
        """The series' signing key from the packaging tarball of an upload the index lists,
        checked against the index's sha256 (the key must still carry versions.yaml's
        fingerprint, which the caller checks)."""
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
