"""Today's series (3.14, 3.13): every download verified before use, the library
stanzas as official-images lists them, and the build plan.

The Windows variants come from tests/fixtures/today/versions.yaml (upstream's
3.14.6 and 3.13.14, whose installer checksums upstream's versions.json has):
python.org is out of reach here, so versions.yaml cannot list them yet.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from builder.model.errors import InputError
from builder.generate.library import library_file
from builder.generate.render import dockerfile_path, render
from builder.model.tags import tag_groups
from builder.model.versions import load

from tests.helpers.dockerfile_history import instructions
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT, TODAY_FAMILY

PYTHON_FTP = "https://www.python.org/ftp/python/"
COMMIT = "228f71e70a42ba9f9a092321b971031603bb88ff"


@pytest.fixture(scope="module")
def python_family():
    return load(ROOT / "versions.yaml")


@pytest.fixture(scope="module")
def today_family():
    return load(TODAY_FAMILY, ROOT / "templates")


def todays_dockerfiles(family):
    rendered = render(family)
    for version in family.versions:
        if version.key >= (3, 13):
            for variant in version.variants:
                yield version, variant, rendered[dockerfile_path(version, variant)]


def shell_commands(run: str) -> list[list[str]]:
    """A RUN line as its commands (split at ; and &&), each a list of words; pipes stay inside."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in (";", "&&"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def env_values(text: str) -> dict[str, str]:
    return dict(arguments.split(" ", 1) for keyword, arguments in instructions(text)
                if keyword == "ENV")


def check_linux_downloads(version, text: str) -> int:
    """Each wget'd file is checked (sha256, and gpg where signed) before anything else reads it."""
    env = env_values(text)
    assert env["PYTHON_SHA256"] == version.sha256
    assert ("GPG_KEY" in env) == (version.gpg_key is not None)
    assert not any(keyword == "ADD" for keyword, _ in instructions(text))
    downloads = 0
    for keyword, run in instructions(text):
        if keyword != "RUN":
            continue
        assert "curl" not in run and "get-pip" not in run
        commands = shell_commands(run)
        for at, command in enumerate(commands):
            if command[0] != "wget":
                continue
            target, url = command[command.index("-O") + 1], command[-1]
            assert url.startswith(PYTHON_FTP), url
            if target.endswith(".asc"):
                continue  # the signature is what checks the tarball
            downloads += 1
            later = commands[at + 1:]
            checks = [i for i, c in enumerate(later)
                      if "sha256sum" in c and "-c" in c and f"$PYTHON_SHA256 *{target}" in c]
            verifies = [i for i, c in enumerate(later)
                        if c[:3] == ["gpg", "--batch", "--verify"] and c[-1] == target]
            uses = [i for i, c in enumerate(later)
                    if target in c and not (i in checks or i in verifies or c[0] in ("wget", "rm"))]
            assert checks and uses, f"{target}: no sha256 check or no use"
            assert checks[0] < uses[0], f"{target} is used before its sha256 is checked"
            if version.gpg_key is not None:
                assert verifies and verifies[0] < uses[0], f"{target} used before gpg --verify"
                [fetch] = [c for c in later if c[:2] == ["gpg", "--batch"] and "--recv-keys" in c]
                assert fetch[fetch.index("--keyserver") + 1] == version.keyserver
                assert fetch[-1] == "$GPG_KEY"
            else:
                assert not verifies and "gpg" not in run
    return downloads


def check_windows_download(version, text: str) -> None:
    """The installer is fetched, its Get-FileHash compared, and only then run."""
    assert env_values(text)["PYTHON_SHA256"] == version.windows_sha256
    [run] = [arguments for keyword, arguments in instructions(text) if keyword == "RUN"]
    assert "get-pip" not in text and f"'{PYTHON_FTP}" in run
    fetched = run.index("Invoke-WebRequest -Uri $url -OutFile 'python.exe'")
    compared = run.index("if ((Get-FileHash python.exe -Algorithm sha256).Hash -ne "
                         "$env:PYTHON_SHA256) {")
    refused = run.index("exit 1;", compared)
    installed = run.index("Start-Process python.exe")
    assert run.count("Invoke-WebRequest") == 1
    assert fetched < compared < refused < installed


def test_every_download_of_todays_series_is_verified_before_use(python_family, today_family):
    linux = windows = 0
    for family in (python_family, today_family):
        for version, variant, text in todays_dockerfiles(family):
            if variant.is_windows:
                check_windows_download(version, text)
                windows += 1
            else:
                assert check_linux_downloads(version, text) == 1
                linux += 1
    assert (linux, windows) == (26, 8)  # 3.14's two free-threaded variants among them


SHA_CHECK = "\techo \"$PYTHON_SHA256 *python.tar.xz\" | sha256sum -c -; \\\n"
UNPACK = "\ttar --extract --directory /usr/src/python --strip-components=1 --file python.tar.xz; \\\n"


@pytest.mark.parametrize("edits", [
    [(SHA_CHECK, "")],
    [("\tgpg --batch --verify python.tar.xz.asc python.tar.xz; \\\n", "")],
    [(SHA_CHECK, ""), (UNPACK, UNPACK + SHA_CHECK)],
    [("sha256sum -c -", "sha256sum -")],
], ids=["no sha256 check", "no gpg verify", "unpacked before the check", "not a check"])
def test_the_download_check_catches_an_unverified_tarball(python_family, edits):
    version = python_family.version("3.13")
    text = render(python_family)[dockerfile_path(version, version.variant("slim-trixie"))]
    check_linux_downloads(version, text)
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    with pytest.raises(AssertionError):
        check_linux_downloads(version, text)


def test_the_windows_check_catches_an_installer_run_unchecked(today_family):
    version = today_family.version("3.14")
    text = render(today_family)[dockerfile_path(version, version.variant("windowsservercore-ltsc2025"))]
    check_windows_download(version, text)
    with pytest.raises((AssertionError, ValueError)):
        check_windows_download(version, text.replace("Get-FileHash", "Get-Item"))


def test_a_windows_variant_without_its_installer_checksum_is_refused(tmp_path):
    (tmp_path / "versions.yaml").write_text(
        TODAY_FAMILY.read_text().replace("    windows-sha256: 14b3e9a7", "    # windows-sha256: 14b3e9a7"))
    with pytest.raises(InputError) as caught:
        render(load(tmp_path / "versions.yaml", ROOT / "templates"))
    assert "windows_sha256" in caught.value.message and "3.14/windows/" in caught.value.message
    assert Path(caught.value.source).name == "windowsservercore.Dockerfile.j2"


def test_the_2019_series_keep_the_sks_keyserver_and_today_keys_openpgp(python_family):
    rendered = render(python_family)
    for version in python_family.versions:
        for variant in version.variants:
            text = rendered[dockerfile_path(version, variant)]
            if version.gpg_key is None or variant.is_windows:
                assert "--keyserver" not in text
            elif version.pip is not None:
                assert "--keyserver ha.pool.sks-keyservers.net " in text
            else:
                assert "--keyserver hkps://keys.openpgp.org " in text


def test_the_slim_and_alpine_variants_keep_only_the_libraries_they_link(python_family):
    for version, variant, text in todays_dockerfiles(python_family):
        if variant.is_windows:
            continue
        if variant.name.startswith("alpine"):
            assert "scanelf --needed" in text and "apk del --no-network .build-deps" in text
        elif variant.name.startswith("slim-"):
            assert "-exec ldd '{}' ';'" in text and "apt-get purge -y --auto-remove" in text
            assert "-Wl,--strip-all" in text
        for needed in ("--enable-shared", "--with-lto", "--with-ensurepip",
                       "--enable-option-checking=fatal", "-fno-omit-frame-pointer",
                       "-Wl,-rpath='\\$\\$ORIGIN/../lib'", "-name idle_test", "'libpython*.a'"):
            assert needed in text, (variant.name, needed)
        assert ("\t\t--enable-optimizations \\\n" in text) != variant.name.startswith("alpine")
        assert ("zstd-dev" in text) == (version.key >= (3, 14))


# From official-images' library/python at 37079fb3 (2026-08-21), for 3.14.7 and 3.13.15;
OFFICIAL = """\
Tags: 3.14.7-trixie, 3.14-trixie, 3-trixie, trixie
SharedTags: 3.14.7, 3.14, 3, latest
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/trixie

Tags: 3.14.7-slim-trixie, 3.14-slim-trixie, 3-slim-trixie, slim-trixie, 3.14.7-slim, 3.14-slim, 3-slim, slim
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/slim-trixie

Tags: 3.14.7-bookworm, 3.14-bookworm, 3-bookworm, bookworm
Architectures: amd64, arm32v7, arm64v8, i386, ppc64le
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/bookworm

Tags: 3.14.7-slim-bookworm, 3.14-slim-bookworm, 3-slim-bookworm, slim-bookworm
Architectures: amd64, arm32v7, arm64v8, i386, ppc64le
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/slim-bookworm

Tags: 3.14.7-alpine3.24, 3.14-alpine3.24, 3-alpine3.24, alpine3.24, 3.14.7-alpine, 3.14-alpine, 3-alpine, alpine
Architectures: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/alpine3.24

Tags: 3.14.7-alpine3.23, 3.14-alpine3.23, 3-alpine3.23, alpine3.23
Architectures: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/alpine3.23

Tags: 3.14.7-windowsservercore-ltsc2025, 3.14-windowsservercore-ltsc2025, 3-windowsservercore-ltsc2025, windowsservercore-ltsc2025
SharedTags: 3.14.7-windowsservercore, 3.14-windowsservercore, 3-windowsservercore, windowsservercore, 3.14.7, 3.14, 3, latest
Architectures: windows-amd64
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/windows/windowsservercore-ltsc2025
Constraints: windowsservercore-ltsc2025
Builder: classic

Tags: 3.14.7-windowsservercore-ltsc2022, 3.14-windowsservercore-ltsc2022, 3-windowsservercore-ltsc2022, windowsservercore-ltsc2022
SharedTags: 3.14.7-windowsservercore, 3.14-windowsservercore, 3-windowsservercore, windowsservercore, 3.14.7, 3.14, 3, latest
Architectures: windows-amd64
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.14/windows/windowsservercore-ltsc2022
Constraints: windowsservercore-ltsc2022
Builder: classic

Tags: 3.13.15-trixie, 3.13-trixie
SharedTags: 3.13.15, 3.13
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/trixie

Tags: 3.13.15-slim-trixie, 3.13-slim-trixie, 3.13.15-slim, 3.13-slim
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/slim-trixie

Tags: 3.13.15-bookworm, 3.13-bookworm
Architectures: amd64, arm32v7, arm64v8, i386, ppc64le
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/bookworm

Tags: 3.13.15-slim-bookworm, 3.13-slim-bookworm
Architectures: amd64, arm32v7, arm64v8, i386, ppc64le
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/slim-bookworm

Tags: 3.13.15-alpine3.24, 3.13-alpine3.24, 3.13.15-alpine, 3.13-alpine
Architectures: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/alpine3.24

Tags: 3.13.15-alpine3.23, 3.13-alpine3.23
Architectures: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/alpine3.23

Tags: 3.13.15-windowsservercore-ltsc2025, 3.13-windowsservercore-ltsc2025
SharedTags: 3.13.15-windowsservercore, 3.13-windowsservercore, 3.13.15, 3.13
Architectures: windows-amd64
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/windows/windowsservercore-ltsc2025
Constraints: windowsservercore-ltsc2025
Builder: classic

Tags: 3.13.15-windowsservercore-ltsc2022, 3.13-windowsservercore-ltsc2022
SharedTags: 3.13.15-windowsservercore, 3.13-windowsservercore, 3.13.15, 3.13
Architectures: windows-amd64
GitCommit: 228f71e70a42ba9f9a092321b971031603bb88ff
Directory: 3.13/windows/windowsservercore-ltsc2022
Constraints: windowsservercore-ltsc2022
Builder: classic
"""


def stanzas(text: str) -> list[str]:
    return [s.strip("\n") + "\n" for s in text.split("\n\n") if s.startswith("Tags:")]


def official(full_3_14: str, full_3_13: str, windows: bool) -> list[str]:
    text = OFFICIAL.replace("3.14.7", full_3_14).replace("3.13.15", full_3_13)
    return [s for s in stanzas(text) if windows or "windows" not in s]


def todays_stanzas(family, free_threaded: bool = False) -> list[str]:
    """The 3.14 and 3.13 stanzas: those official-images has, or the free-threaded ones, which
    no official image has yet."""
    text = library_file(family, lambda directory: COMMIT)
    return [s for s in stanzas(text) if re.search(r"^Directory: 3\.1[34]/", s, re.M)
            and ("-freethreaded\n" in s) == free_threaded]


def test_the_free_threaded_stanzas_carry_the_t_tags(python_family):
    assert todays_stanzas(python_family, free_threaded=True) == [
        "Tags: 3.14.7t-trixie, 3.14t-trixie, 3t-trixie, 3.14.7t, 3.14t, 3t\n"
        "Architectures: amd64, arm64v8\n"
        f"GitCommit: {COMMIT}\n"
        "Directory: 3.14/trixie-freethreaded\n",
        "Tags: 3.14.7t-slim-trixie, 3.14t-slim-trixie, 3t-slim-trixie, 3.14.7t-slim, 3.14t-slim, "
        "3t-slim\n"
        "Architectures: amd64, arm64v8\n"
        f"GitCommit: {COMMIT}\n"
        "Directory: 3.14/slim-trixie-freethreaded\n"]


def test_the_library_stanzas_are_the_official_ones(python_family, today_family):
    assert todays_stanzas(python_family) == official("3.14.7", "3.13.14", windows=True)
    assert todays_stanzas(today_family) == official("3.14.6", "3.13.14", windows=True)


def test_latest_moved_to_3_14(python_family, today_family):
    groups = tag_groups(python_family, python_family.version("3.14"))
    assert [v.name for v in groups["latest"]] == [
        "trixie", "windowsservercore-ltsc2025", "windowsservercore-ltsc2022"]
    assert [v.name for v in groups["slim"]] == ["slim-trixie"]
    assert [v.name for v in groups["alpine"]] == ["alpine3.24"]
    groups = tag_groups(today_family, today_family.version("3.14"))
    assert [v.name for v in groups["latest"]] == [
        "trixie", "windowsservercore-ltsc2025", "windowsservercore-ltsc2022"]
    for version in python_family.versions[2:]:
        assert not {"3", "latest", "slim", "alpine", "buster"} & set(tag_groups(python_family, version))


def test_dry_run_prints_the_3_14_plan(tmp_path):
    builders = tmp_path / "builders.yaml"
    builders.write_text("engines:\n  - name: nowhere\n    url: unix:///nonexistent/docker.sock\n"
                        "    platforms: [amd64, arm32v5, arm32v6, arm32v7, arm64v8, i386, ppc64le, "
                        "riscv64, s390x]\n")

    done = invoke("build", "--version", "3.14", "--dry-run", "--builders", str(builders))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("plan for python 3.14.7: 46 jobs, 2 skipped")
    assert "  slim-trixie  tags: 3.14.7-slim-trixie 3.14-slim-trixie 3-slim-trixie slim-trixie " \
           "3.14.7-slim 3.14-slim 3-slim slim" in lines
    assert any(line.split()[:3] == ["3.14.7/slim-trixie/i386", "nowhere",
                                    "python:3.14.7-slim-trixie-i386"] for line in lines)
    assert not any("bookworm/riscv64" in line or "bookworm/s390x" in line for line in lines)


def test_a_patch_release_is_an_edit_of_two_lines(tmp_path, python_family):
    """3.13.5 (trixie's, whose Debian orig tarball is upstream's byte for byte) for 3.13.14."""
    sha_3_13_5 = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
    text = (ROOT / "versions.yaml").read_text(encoding="utf-8")
    text = text.replace("version: 3.13.14", "version: 3.13.5").replace(
        python_family.version("3.13").sha256, sha_3_13_5)
    (tmp_path / "versions.yaml").write_text(text, encoding="utf-8")
    bumped = load(tmp_path / "versions.yaml", ROOT / "templates")
    before, after = render(python_family), render(bumped)
    assert before.keys() == after.keys()
    changed = sorted(p.parent.as_posix() for p in before if before[p] != after[p])
    assert changed == ["3.13/alpine3.23", "3.13/alpine3.24", "3.13/bookworm", "3.13/slim-bookworm",
                       "3.13/slim-trixie", "3.13/trixie", "3.13/windows/windowsservercore-ltsc2022",
                       "3.13/windows/windowsservercore-ltsc2025"]
    for path in changed:
        assert after[Path(path) / "Dockerfile"] == before[Path(path) / "Dockerfile"].replace(
            "3.13.14", "3.13.5").replace(python_family.version("3.13").sha256, sha_3_13_5)


def test_the_build_dependencies_and_windows_url_are_upstreams(python_family, today_family):
    """Upstream installs gnupg in every slim and alpine build, signed release or not, and its
    Windows files derive the download directory from PYTHON_VERSION (no PYTHON_RELEASE)."""
    checked = 0
    for family in (python_family, today_family):
        for version, variant, text in todays_dockerfiles(family):
            if variant.is_windows:
                assert "PYTHON_RELEASE" not in text
                assert "-f ($env:PYTHON_VERSION -replace '[a-z]+[0-9]*$', ''), $env:PYTHON_VERSION)" in text
            elif variant.name.startswith(("slim-", "alpine")):
                assert "\t\tgnupg \\\n" in text, (version.full, variant.name)
            checked += 1
    assert checked == 18 + 16  # versions.yaml has 3.14's two free-threaded variants too
    # The 2019 Windows files stay as published, PYTHON_RELEASE and all.
    rendered = render(python_family)
    version = python_family.version("3.8")
    assert "\nENV PYTHON_RELEASE 3.8.0\n" in rendered[
        dockerfile_path(version, version.variant("windowsservercore-1809"))]


def test_the_free_threaded_variants_build_without_the_gil_and_are_smoke_tested_for_it(python_family):
    from builder.model.smoke import for_variant

    version = python_family.version("3.14")
    rendered = render(python_family)
    for name in ("trixie", "slim-trixie"):
        plain = rendered[dockerfile_path(version, version.variant(name))]
        free = rendered[dockerfile_path(version, version.variant(f"{name}-freethreaded"))]
        assert "--disable-gil" not in plain
        # The same Dockerfile but for the configure option (and the comment saying why).
        assert [line for line in free.splitlines() if line not in plain.splitlines()] == [
            "# Free-threaded (PEP 703, supported from 3.14 by PEP 779): no GIL; python3.14t, "
            "libpython3.14t.", "\t\t--disable-gil \\"]
        checks = [c.name for c in for_variant(python_family.checks, f"{name}-freethreaded", False)]
        assert "free-threaded" in checks
        assert "free-threaded" not in [c.name for c in for_variant(python_family.checks, name, False)]
    [check] = [c for c in python_family.checks if c.name == "free-threaded"]
    assert "sys._is_gil_enabled() is False" in check.run and 'python${series}t' in check.run
