"""A release Debian's index no longer lists, taken from the pool when its upload's signed .dsc
vouches for it: CPython 3.14.7 (python3.14_3.14.7-1.dsc, signed by its uploader) against the
real parts, gpgv and Debian's keyrings (the debian-keyring package).

The pool's two files (the .dsc and the 23 MB orig tarball) are downloaded from Debian's archive
once into the test bed's cache; each test serves its own copy of that pool on a free port and
may tamper with it. Debian's index is stood in for by a fixed list of uploads (apt cannot read
a pool without a signed index): the pool, the signature and the checks are the real ones.
No Docker.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.mirror import debian, fill, layout
from builder.mirror.deb822 import SourceEntry
from builder.mirror.verify import DEBIAN_KEYRINGS, sha256_file
from builder.model.errors import VerificationError
from builder.model.versions import load
from builder.update import debian as debian_update
from testbed.paths import cache_dir
from tests.helpers.paths import ROOT

VERSION = "3.14.7"
SHA256 = "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81"  # as the .dsc names it
DSC = "python3.14_3.14.7-1.dsc"
ORIG = "python3.14_3.14.7.orig.tar.xz"
POOL = layout.debian_pool_directory(VERSION)
# What the index lists for python3.14 today: a newer upload whose files the pool no longer has.
LISTED = [SourceEntry("python3.14", "3.14.9-1", (("python3.14_3.14.9.orig.tar.xz", "9" * 64),))]


@pytest.fixture(scope="session")
def pool_files() -> Path:
    """The real .dsc and orig tarball of 3.14.7, from Debian's pool, kept while they verify."""
    if not all(k.is_file() for k in DEBIAN_KEYRINGS):
        pytest.fail("Debian's keyrings are missing: scripts/setup installs debian-keyring")
    directory = cache_dir() / "debian-pool"
    for name in (DSC, ORIG):
        path = directory / POOL / name
        if not path.is_file() or (name == ORIG and sha256_file(path) != SHA256):
            assert fill.download(f"{debian.DEBIAN_ARCHIVE}/{POOL}/{name}", path, required=True)
    assert sha256_file(directory / POOL / ORIG) == SHA256
    return directory


@pytest.fixture
def archive(pool_files, tmp_path):
    """(a copy of the pool's directory, the archive URL serving it)."""
    root = tmp_path / "archive"
    shutil.copytree(pool_files, root)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root / POOL, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class PoolOnly:
    """The Debian provider with the index stood in for: the release is in the pool only."""

    def __init__(self, url: str, work: Path) -> None:
        self.archive = debian.DebianArchive(work, archive=url)

    def fetch(self, wanted: fill.Wanted) -> fill.Fetched:
        return self.archive.from_pool(wanted, LISTED)


class ListedIndex(debian.DebianArchive):
    """For `update`: Debian's archive whose index lists LISTED."""

    def entries(self, version: str) -> list[SourceEntry]:
        return LISTED


def _fill(url: str, tmp_path: Path, sha256: str = SHA256) -> tuple[Path, list[fill.Accepted], str]:
    mirror = tmp_path / "mirror"
    out = io.StringIO()
    accepted = fill.fill(mirror, [fill.Wanted(VERSION, sha256, None)],
                         PoolOnly(url, tmp_path / "work"), out)
    return mirror, accepted, out.getvalue()


def _refused(url: str, tmp_path: Path, sha256: str = SHA256) -> str:
    with pytest.raises(VerificationError) as caught:
        _fill(url, tmp_path, sha256)
    assert not (tmp_path / "mirror" / layout.tarball_path(VERSION)).exists()
    return str(caught.value)


def test_the_signed_dsc_vouches_for_3_14_7_and_the_chain_is_recorded(archive, tmp_path):
    pool, url = archive
    mirror, accepted, out = _fill(url, tmp_path)
    assert sha256_file(mirror / layout.tarball_path(VERSION)) == SHA256
    [entry] = accepted
    assert entry.origin == f"Debian's pool {url}/{POOL}/ (not in the index)"
    assert entry.chain[0].startswith(f"Debian-signed .dsc {DSC} (signed by ")
    assert "<doko@debian.org>" in entry.chain[0]  # the uploader, Matthias Klose
    assert entry.chain[1] == f"versions.yaml sha256 {SHA256[:12]}…"
    assert "accepted by Debian-signed .dsc" in out


def test_a_tampered_dsc_is_refused(archive, tmp_path):
    pool, url = archive
    dsc = pool / DSC
    # One digit of the signed orig checksum, changed: the signature no longer covers the text.
    text = dsc.read_text()
    assert text.count(SHA256) == 1
    dsc.write_text(text.replace(SHA256, "4" + SHA256[1:]))
    said = _refused(url, tmp_path)
    assert said == (f"{DSC} (for {layout.tarball_path(VERSION)}): not a good signature by a key "
                    "of Debian's keyrings: gpgv: BAD signature from \"Matthias Klose "
                    "<doko@debian.org>\"; refused")


def test_a_tampered_tarball_is_refused_by_the_dsc_even_when_versions_yaml_agrees(archive, tmp_path):
    pool, url = archive
    with (pool / ORIG).open("ab") as stream:
        stream.write(b"\0")
    tampered = sha256_file(pool / ORIG)
    # versions.yaml naming the tampered file's sha256 would let it through; the .dsc does not.
    said = _refused(url, tmp_path, sha256=tampered)
    assert said == (f"{url}/{POOL}/{DSC}: names {ORIG} with sha256 {SHA256}, but the download "
                    f"has {tampered}; refused, nothing written")


def test_a_dsc_signed_by_a_key_outside_debians_keyrings_is_refused(archive, tmp_path):
    pool, url = archive
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "Not Debian <nobody@example.org>", "ed25519",
                    "sign", "never"], check=True, capture_output=True)
    # The signed text as it is (gpg cannot check the signature here: it has no Debian key).
    signed = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--decrypt", str(pool / DSC)],
                            capture_output=True).stdout
    assert b"Checksums-Sha256:" in signed
    (pool / DSC).write_bytes(subprocess.run([*gpg, "--clearsign"], input=signed, check=True,
                                            capture_output=True).stdout)
    said = _refused(url, tmp_path)
    assert said.endswith("not a good signature by a key of Debian's keyrings: gpgv: Can't check "
                         "signature: No public key; refused")


def test_without_a_dsc_an_unsigned_release_outside_the_index_is_refused(archive, tmp_path):
    pool, url = archive
    (pool / DSC).unlink()
    said = _refused(url, tmp_path)
    assert said == (f"{layout.tarball_path(VERSION)}: {url}/{POOL}/{ORIG} is in no index and "
                    f"the pool has no {DSC} to vouch for it; refused, the mirror is unchanged")


def _family(tmp_path: Path):
    """versions.yaml with 3.14 at 3.14.6, as before the bump."""
    text = (ROOT / "versions.yaml").read_text()
    version = load(ROOT / "versions.yaml").version("3.14")
    if version.full != "3.14.6":
        text = text.replace(f"version: {version.full}\n", "version: 3.14.6\n").replace(
            version.sha256, "143b1dddefaec3bd2e21e3b839b34a2b7fb9842272883c576420d605e9f30c63")
    path = tmp_path / "versions.yaml"
    path.write_text(text)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return path, load(path).version("3.14")


def test_update_from_debian_takes_3_14_7_vouched_for_by_its_dsc(archive, tmp_path):
    pool, url = archive
    path, version = _family(tmp_path)
    [result] = debian_update.results([version], path, False, ListedIndex(tmp_path / "w", url))
    assert (result.old, result.new, result.sha256) == ("3.14.6", VERSION, SHA256)
    assert result.chain.startswith(f"Debian-signed .dsc {DSC} (signed by ")
    assert result.windows_kept == debian_update.NO_INSTALLER  # Debian has no Windows installer


def test_update_from_debian_refuses_a_tampered_dsc(archive, tmp_path):
    pool, url = archive
    path, version = _family(tmp_path)
    (pool / DSC).write_text((pool / DSC).read_text().replace("Version: 3.14.7-1", "Version: 3.14.7-2"))
    with pytest.raises(VerificationError) as caught:
        debian_update.results([version], path, False, ListedIndex(tmp_path / "w", url))
    assert "BAD signature" in str(caught.value) and str(caught.value).endswith(
        f"{path} not written")
