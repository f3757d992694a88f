"""`invoke update` against the project's mirror server with real releases.

The source is a mirror tree holding 3.13.5 and 3.13.14 as Debian's archive carries them
(upstream's tarballs and signatures, checked by `fill` against their sha256 and the release
manager's key), kept in the test bed's cache so a warm run downloads nothing; each test serves
its own copy on a free port and may tamper with it. The family is a copy of the repository's
versions.yaml with 3.13 pinned back to 3.13.5. No Docker. (Debian's index lists 3.13.18,
but its pool no longer holds it, HTTP 404: 3.13.14 is the newest release whose upstream
tarball and signature can be had here.)

Debian carries no Windows installer: where a test needs python-3.13.14-amd64.exe in the
source, it puts a small stand-in file there, and says so.
"""
from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from builder.update import index as releases
from builder.commands import generate, update
from builder.update import bump
from builder.model.errors import EXIT_PARTIAL, InputError, VerificationError
from builder.mirror import fill, layout, serve
from builder.mirror.debian import DebianArchive
from builder.mirror.verify import sha256_file
from builder.model.streams import null
from testbed.paths import cache_dir
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT

FINGERPRINT = "7169605F62C751356D054A26A821E680E5FA6305"  # Thomas Wouters, 3.12/3.13
OLD, NEW = "3.13.5", "3.13.14"
OLD_SHA256 = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
NEW_SHA256 = "639e43243c620a308f968213df9e00f2f8f62332f7adbaa7a7eeb9783057c690"
OLD_WINDOWS_SHA256 = "c1cb40978b28f696b111c36034a1bdeda17d25e35c74a08ef5e5ff405a63fc20"  # upstream's
NEW_WINDOWS_SHA256 = "c54d9b9bbb8a36e6489363ddd01139707fd781d72f1f9e90c7ec65d0061368e0"
STAND_IN = b"stand-in for python-3.13.14-amd64.exe: Debian's archive carries no Windows installer\n"
INSTALLER = f"python/{NEW}/python-{NEW}-amd64.exe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(directory: Path) -> dict[str, str]:
    """Every file under `directory` and its sha256: what "nothing written" means."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="session")
def filled_source() -> Path:
    """3.13.5 (trixie's index) and 3.13.14 (Debian's pool), verified; reused while they verify."""
    directory = cache_dir() / "update-source"
    fill.fill(directory, [fill.Wanted(OLD, OLD_SHA256, FINGERPRINT),
                          fill.Wanted(NEW, NEW_SHA256, FINGERPRINT)],
              DebianArchive(cache_dir() / "source-mirror-work"), out=io.StringIO())
    return directory


@pytest.fixture
def source(filled_source, tmp_path):
    """(the served copy's directory, its python/ URL)."""
    directory = tmp_path / "source"
    shutil.copytree(filled_source, directory, ignore=shutil.ignore_patterns(layout.WORK))
    url = serve.start(directory, _free_port())
    yield directory, f"{url}/python/"
    serve.stop(directory)


@pytest.fixture
def family(tmp_path) -> Path:
    """The repository's versions.yaml and templates with 3.13 pinned to 3.13.5, and its tree."""
    directory = tmp_path / "family"
    directory.mkdir()
    shutil.copytree(ROOT / "templates", directory / "templates")
    text = (ROOT / "versions.yaml").read_text()
    for old, new in ((f"version: {NEW}\n", f"version: {OLD}\n"), (NEW_SHA256, OLD_SHA256),
                     (NEW_WINDOWS_SHA256, OLD_WINDOWS_SHA256)):
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = directory / "versions.yaml"
    path.write_text(text)
    generate.run(generate.GenerateOptions(str(path)), null())
    return path


def _update(family: Path, url: str, **options) -> update.UpdateResult:
    return update.run(update.UpdateOptions(str(family), series=("3.13",), source=url, **options),
                      out=io.StringIO())


def _diff(before: Path, after: Path) -> tuple[list[str], list[str]]:
    """The lines removed and the lines added, as `git diff --no-index -U0` gives them."""
    result = subprocess.run(["git", "diff", "--no-index", "-U0", str(before), str(after)],
                            capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line[:3] not in ("+++", "---")]
    return ([line[1:] for line in lines if line.startswith("-")],
            [line[1:] for line in lines if line.startswith("+")])


# --- against the mirror server ---------------------------------------------------------------

def test_the_mirror_lists_its_tree_as_an_autoindex_without_dot_entries(source):
    directory, url = source
    (directory / "python" / ".partial.tmp").write_text("being written")
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    listing = releases.parse_listing(page.text)
    assert listing.directories == (NEW, OLD) and listing.files == ()
    root = releases.parse_listing(requests.get(url.removesuffix("python/"), timeout=10).text)
    assert root.directories == ("keys", "python")  # not .work/
    release = releases.parse_listing(requests.get(f"{url}{NEW}/", timeout=10).text)
    assert release.files == (f"Python-{NEW}.tar.xz", f"Python-{NEW}.tar.xz.asc")
    assert requests.get(url.removesuffix("python/") + ".work/", timeout=10).status_code == 404


def test_3_13_5_updates_to_3_13_14_verified_and_only_its_lines_change(source, family, tmp_path):
    directory, url = source
    (directory / INSTALLER).write_bytes(STAND_IN)  # a stand-in: see the module docstring
    tarball = directory / layout.tarball_path(NEW)
    # Checksum files the source offers are cross-checked against the tarball: these agree.
    Path(f"{tarball}.sha256").write_text(f"{NEW_SHA256}  {tarball.name}\n")
    Path(f"{tarball}.spdx.json").write_text(_sbom(tarball.name, NEW_SHA256))
    before = tmp_path / "before.yaml"
    shutil.copy(family, before)
    assert invoke("update", "--check", "--series", "3.13", "--source", url,
                   "--versions", str(family)).returncode == 1
    report = tmp_path / "report.json"
    result = invoke("update", "--series", "3.13", "--source", url, "--versions", str(family),
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert f"3.13: {OLD} → {NEW} (sha256 {NEW_SHA256}" in result.stdout
    stand_in_sha256 = sha256_file(directory / INSTALLER)
    assert _diff(before, family) == (
        [f"  - version: {OLD}", f"    sha256: {OLD_SHA256}", f"    windows-sha256: {OLD_WINDOWS_SHA256}"],
        [f"  - version: {NEW}", f"    sha256: {NEW_SHA256}", f"    windows-sha256: {stand_in_sha256}"])
    written = json.loads(report.read_text())
    assert written["exit_code"] == 0
    assert [(s["series"], s["old"], s["new"], s["sha256"]) for s in written["series"]] == [
        ("3.13", OLD, NEW, NEW_SHA256)]
    assert written["files"] and all(f.startswith("3.13/") for f in written["files"])
    assert invoke("generate", "--check", "--versions", str(family)).returncode == 0
    after = invoke("update", "--check", "--series", "3.13", "--source", url,
                    "--versions", str(family))
    assert after.returncode == 0 and f"3.13: {NEW}, up to date" in after.stdout


def test_the_repositorys_own_versions_file_is_up_to_date_with_the_mirror(source):
    """versions.yaml itself holds 3.13.14, with upstream's sha256: the update agrees."""
    _, url = source
    check = invoke("update", "--check", "--series", "3.13", "--source", url)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_source_without_the_windows_installer_gives_a_partial_update(source, family, tmp_path):
    _, url = source
    before = tmp_path / "before.yaml"
    shutil.copy(family, before)
    result = _update(family, url)
    assert result.exit_code == EXIT_PARTIAL == 3
    [series] = result.series
    assert series.new == NEW and series.windows_sha256 is None
    assert f"lists no python-{NEW}-amd64.exe" in series.windows_kept
    assert _diff(before, family) == ([f"  - version: {OLD}", f"    sha256: {OLD_SHA256}"],
                                     [f"  - version: {NEW}", f"    sha256: {NEW_SHA256}"])
    shutil.copy(before, family)
    cli = invoke("update", "--series", "3.13", "--source", url, "--versions", str(family))
    assert cli.returncode == 3 and "windows-sha256 kept, not bumped" in cli.stdout


def test_a_partial_update_is_completed_once_the_source_offers_the_installer(source, family, tmp_path):
    directory, url = source
    assert _update(family, url).exit_code == EXIT_PARTIAL
    partial = tmp_path / "partial.yaml"
    shutil.copy(family, partial)
    assert _update(family, url).series[0].new is None  # nothing says windows-sha256 is stale
    installer = directory / INSTALLER
    installer.write_bytes(STAND_IN)  # a stand-in: see the module docstring
    stand_in_sha256 = sha256_file(installer)
    Path(f"{installer}.sha256").write_text(f"{stand_in_sha256}  {installer.name}\n")
    check = invoke("update", "--check", "--series", "3.13", "--source", url,
                    "--versions", str(family))
    assert check.returncode == 1 and f"windows-sha256 → {stand_in_sha256} available" in check.stdout
    assert _update(family, url).exit_code == 0
    assert _diff(partial, family) == ([f"    windows-sha256: {OLD_WINDOWS_SHA256}"],
                                      [f"    windows-sha256: {stand_in_sha256}"])
    assert invoke("generate", "--check", "--versions", str(family)).returncode == 0
    assert _update(family, url, check=True).exit_code == 0


def test_dry_run_prints_the_diff_and_writes_nothing(source, family):
    directory, url = source
    (directory / INSTALLER).write_bytes(STAND_IN)  # a stand-in: see the module docstring
    before = _files(family.parent)
    result = _update(family, url, dry_run=True)
    assert f"+  - version: {NEW}\n" in result.diff and f"-    sha256: {OLD_SHA256}\n" in result.diff
    assert "3.13/trixie/Dockerfile" in result.files
    assert _files(family.parent) == before


def _sbom(name: str, sha256: str) -> str:
    """An SBOM as python.org publishes beside a release file (release-tools' sbom.py): the
    CPython package names the file and its sha256; the vendored packages come first."""
    return json.dumps({"spdxVersion": "SPDX-2.3", "packages": [
        {"SPDXID": "SPDXRef-PACKAGE-expat", "name": "expat", "packageFileName": "expat.tar.gz",
         "checksums": [{"algorithm": "SHA256", "checksumValue": "1" * 64}]},
        {"SPDXID": "SPDXRef-PACKAGE-cpython", "name": "CPython", "packageFileName": name,
         "checksums": [{"algorithm": "SHA256", "checksumValue": sha256}]}]})


def _tamper_checksum(directory: Path) -> None:
    tarball = directory / layout.tarball_path(NEW)
    Path(f"{tarball}.sha256").write_text(f"{'0' * 64}  {tarball.name}\n")


def _tamper_sbom(directory: Path) -> None:
    tarball = directory / layout.tarball_path(NEW)
    Path(f"{tarball}.spdx.json").write_text(_sbom(tarball.name, "0" * 64))


def _tamper_signature(directory: Path) -> None:
    """3.13.5's genuine signature in place of 3.13.14's: a good key, the wrong file."""
    shutil.copy(directory / layout.signature_path(OLD), directory / layout.signature_path(NEW))


def _tamper_tarball(directory: Path) -> None:
    tarball = directory / layout.tarball_path(NEW)
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper, says", [
    (_tamper_checksum, f"Python-{NEW}.tar.xz.sha256: gives sha256 {'0' * 64}, but"),
    (_tamper_sbom, f"Python-{NEW}.tar.xz.spdx.json: gives sha256 {'0' * 64}, but"),
    (_tamper_signature, f"not a good signature by {FINGERPRINT}"),
    (_tamper_tarball, f"not a good signature by {FINGERPRINT}"),
], ids=["checksum", "sbom", "signature", "tarball"])
def test_a_tampered_source_is_refused_and_nothing_is_written(source, family, tamper, says):
    directory, url = source
    tamper(directory)
    before = _files(family.parent)
    with pytest.raises(VerificationError) as caught:
        _update(family, url)
    message = str(caught.value)
    assert "\n" not in message and says in message and url in message
    assert f"{family} not written" in message
    assert _files(family.parent) == before
    report = family.parent.parent / "report.json"
    cli = invoke("update", "--series", "3.13", "--source", url, "--versions", str(family),
                  "--report", str(report))
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and says in cli.stderr
    assert says in json.loads(report.read_text())["error"]


def test_an_unreachable_index_or_one_that_is_no_listing_is_one_line_naming_it(source, family):
    directory, url = source
    before = _files(family.parent)
    closed = f"http://127.0.0.1:{_free_port()}/python/"
    # An HTML page that is no directory listing, as a proxy's error page would be.
    (directory / "maintenance").mkdir()
    (directory / "maintenance" / "index.html").write_text(
        "<html><body><h1>Down for maintenance</h1></body></html>\n")
    not_a_listing = url.removesuffix("python/") + "maintenance/"
    for bad, says in ((closed, f"GET {closed}: "),
                      (not_a_listing, f"{not_a_listing}: not an HTML directory listing")):
        cli = invoke("update", "--series", "3.13", "--source", bad, "--versions", str(family))
        assert cli.returncode == 4 and cli.stderr.count("\n") == 1, cli.stderr
        assert says in cli.stderr
    assert _files(family.parent) == before


# --- the pure parts ------------------------------------------------------------------------

NGINX_INDEX = """<html>
<head><title>Index of /ftp/python/</title></head>
<body>
<h1>Index of /ftp/python/</h1><hr><pre><a href="../">../</a>
<a href="3.13.9/">3.13.9/</a>                                            14-Oct-2025 15:44       -
<a href="3.13.14/">3.13.14/</a>                                           03-Jun-2026 10:02       -
<a href="3.14.0/">3.14.0/</a>                                            07-Oct-2025 12:01       -
<a href="3.15.0/">3.15.0/</a>                                            14-Oct-2025 16:20       -
<a href="index-windows.json">index-windows.json</a>                                 03-Jun-2026 10:40   12345
</pre><hr></body>
</html>
"""


def _release_dir(*names: str) -> releases.Listing:
    return releases.Listing((), names)


def test_a_listing_parses_into_directories_and_files():
    listing = releases.parse_listing(NGINX_INDEX)
    assert listing.directories == ("3.13.9", "3.13.14", "3.14.0", "3.15.0")
    assert listing.files == ("index-windows.json",)
    assert releases.release_directories(listing, "3.13") == ["3.13.14", "3.13.9"]
    with pytest.raises(releases.ListingError):
        releases.parse_listing("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")


def test_the_newest_final_release_wins_and_pre_releases_only_without_one():
    assert releases.newest({
        "3.15.0": _release_dir("Python-3.15.0a1.tar.xz", "Python-3.15.0a2.tar.xz",
                               "Python-3.15.0a2.tar.xz.asc", "python-3.15.0a2-amd64.exe")}) == "3.15.0a2"
    assert releases.newest({
        "3.14.0": _release_dir("Python-3.14.0rc3.tar.xz", "Python-3.14.0.tar.xz",
                               "Python-3.14.0b1.tar.xz")}) == "3.14.0"
    # A final in an older directory beats a newer directory's pre-release (or emptiness).
    assert releases.newest({"3.14.1": _release_dir("Python-3.14.1rc1.tar.xz"),
                            "3.14.0": _release_dir("Python-3.14.0.tar.xz")}) == "3.14.0"
    assert releases.newest({"3.14.2": _release_dir("index.html")}) is None
    assert releases.release_key("3.14.0rc1") < releases.release_key("3.14.0") < \
        releases.release_key("3.14.1") and releases.release_key("3.9.0") < releases.release_key("3.10.0")


def test_the_edit_replaces_only_the_value_and_keeps_quotes_comments_and_flow_style():
    text = ("versions:\n"
            "  - version: 3.13.5   # pinned\n"
            "    sha256: 'aaa'\n"
            "  - {version: 3.12.1, sha256: bbb}\n")
    changed = releases.edit(text, [releases.Change(2, "version", "3.13.5", "3.13.14"),
                                   releases.Change(3, "sha256", "aaa", "ccc"),
                                   releases.Change(4, "sha256", "bbb", "ddd")], "v.yaml")
    assert changed == ("versions:\n"
                       "  - version: 3.13.14   # pinned\n"
                       "    sha256: 'ccc'\n"
                       "  - {version: 3.12.1, sha256: ddd}\n")
    with pytest.raises(InputError) as caught:
        releases.edit(text, [releases.Change(3, "sha256", "zzz", "ccc")], "v.yaml")
    assert str(caught.value).startswith("v.yaml:3: sha256: cannot find sha256: zzz")


def test_checksum_files_and_keyserver_urls():
    name = "Python-3.13.14.tar.xz"
    assert releases.parse_checksum_file(f"{NEW_SHA256}  {name}\n", name) == NEW_SHA256
    assert releases.parse_checksum_file(NEW_SHA256.upper(), name) == NEW_SHA256
    with pytest.raises(releases.ListingError):
        releases.parse_checksum_file(f"{NEW_SHA256}  other.tar.xz\n", name)
    sbom = _sbom(name, NEW_SHA256)
    assert releases.parse_spdx(sbom, name) == NEW_SHA256
    with pytest.raises(releases.ListingError):
        releases.parse_spdx(sbom, "Python-3.13.13.tar.xz")
    with pytest.raises(releases.ListingError):
        releases.parse_spdx("<html>", name)
    assert bump.hkp_url("hkps://keys.openpgp.org", FINGERPRINT) == (
        f"https://keys.openpgp.org/pks/lookup?op=get&options=mr&search=0x{FINGERPRINT}")
    assert bump.hkp_url("hkp://127.0.0.1:8600", FINGERPRINT).startswith("http://127.0.0.1:8600/")
    assert bump.hkp_url("ha.pool.sks-keyservers.net", FINGERPRINT).startswith(
        "http://ha.pool.sks-keyservers.net:11371/")


def test_a_series_the_source_lacks_is_left_alone(source, family):
    _, url = source
    result = update.run(update.UpdateOptions(str(family), series=("3.14",), source=url),
                        out=io.StringIO())
    assert result.exit_code == 0 and result.series[0].new is None
    assert "lists no release of 3.14" in result.series[0].note
