"""versions.yaml → Family: the real file loads, and every kind of bad input is one
line naming the file, the line and the field, with exit code 2 and nothing written."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder.model.errors import EXIT_BAD_INPUT, InputError
from builder.model.versions import load
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT, TINY


# Line numbers below refer to this document.
VALID = """\
repository: demo
defaults:
  debian-suite: buster
variants:
  buster:
    template: busybox
    from: busybox:latest
    platforms: [amd64, arm64v8]
  windowsservercore-1809:
    template: windowsservercore
    directory: windows/windowsservercore-1809
    from: mcr.microsoft.com/windows/servercore:1809
    platforms: [windows-amd64]
    os-version: 10.0.17763
versions:
  - version: 3.8.0
    aliases: [3, latest]
    gpg-key: E3FF2839C048B25C084DEBE9B26995E310250568
    pip:
      version: "19.3"
      url: https://github.com/pypa/get-pip/raw/65986a26949050d26e6ec98915da4aade8d8679d/get-pip.py
      sha256: 8d412752ae26b46a39a201ec618ef9ef7656c5b2d8529cdcbe60cd70dc94f40c
    variants: [buster, windowsservercore-1809]
"""

VARIANTS_LINE = "    variants: [buster, windowsservercore-1809]\n"
GOOD_URL = "https://github.com/pypa/get-pip/raw/65986a26949050d26e6ec98915da4aade8d8679d/get-pip.py"

# (case, replace this, with that, line, field, words the message must contain)
BAD_INPUT = [
    ("unknown key", "    template: busybox\n", "    template: busybox\n    colour: blue\n",
     7, "variants.buster.colour", "unknown key 'colour'"),
    ("unknown top-level key", "repository: demo\n", "repository: demo\nrepo: x\n",
     2, "repo", "unknown key"),
    ("image page not https", "repository: demo\n",
     "repository: demo\nimage-url: http://hub.example.org/_/demo\n",
     2, "image-url", "not an https URL"),
    ("missing field", "    from: busybox:latest\n", "",
     5, "variants.buster", "missing field 'from'"),
    ("missing version list", "    variants: [buster, windowsservercore-1809]\n", "",
     16, "versions[0]", "missing field 'variants'"),
    ("version not a release number", "version: 3.8.0", "version: 3.8",
     16, "versions[0].version", "not a release number"),
    ("version with a word", "version: 3.8.0", "version: latest",
     16, "versions[0].version", "not a release number"),
    ("fingerprint too short", "E3FF2839C048B25C084DEBE9B26995E310250568", "E3FF2839C048B25C",
     18, "versions[0].gpg-key", "40 upper-case hex digits"),
    ("fingerprint not hex", "E3FF2839C048B25C084DEBE9B26995E310250568",
     "E3FF2839C048B25C084DEBE9B26995E31025056Z", 18, "versions[0].gpg-key", "40 upper-case hex"),
    ("sha256 too short", "sha256: 8d412752ae26b46a", "sha256: 8d41", 22,
     "versions[0].pip.sha256", "64 lower-case hex digits"),
    ("sha256 not hex", "sha256: 8d412752ae26b46a", "sha256: xd412752ae26b46a", 22,
     "versions[0].pip.sha256", "64 lower-case hex digits"),
    ("unknown platform", "[amd64, arm64v8]", "[amd64, arm64v9]",
     8, "variants.buster.platforms[1]", "unknown platform 'arm64v9'"),
    ("platform listed twice", "[amd64, arm64v8]", "[amd64, amd64]",
     8, "variants.buster.platforms[1]", "listed twice"),
    ("Windows platform without os-version", "    os-version: 10.0.17763\n", "",
     13, "variants.windowsservercore-1809.platforms[0]", "os-version"),
    ("Linux platform with os-version", "[windows-amd64]", "[amd64]",
     13, "variants.windowsservercore-1809.platforms[0]", "os-version"),
    ("variant with no template", "template: busybox", "template: debian",
     6, "variants.buster.template", "no template debian.Dockerfile.j2"),
    ("YAML syntax error", "aliases: [3, latest]", "aliases: [3, latest",
     18, None, "YAML syntax error"),
    ("YAML bad indentation", "    from: busybox:latest\n", "   from: busybox:latest\n",
     7, None, "YAML syntax error"),
    ("duplicate key", "    from: busybox:latest\n", "    from: busybox:latest\n    from: debian\n",
     8, "variants.buster.from", "duplicate key 'from'"),
    ("unknown variant in a version", "[buster, windowsservercore-1809]", "[buster, bullseye]",
     23, "versions[0].variants[1]", "unknown variant 'bullseye'"),
    ("variant listed twice", "[buster, windowsservercore-1809]", "[buster, buster]",
     23, "versions[0].variants[1]", "listed twice"),
    ("default suite not in the catalogue", "debian-suite: buster", "debian-suite: bullseye",
     3, "defaults.debian-suite", "not a Linux variant"),
    ("shell in the version", "version: 3.8.0", "version: 3.8.0; rm -rf /",
     16, "versions[0].version", "not a release number"),
    ("shell in the pip version", 'version: "19.3"', 'version: "19.3\\"; id; \\""',
     20, "versions[0].pip.version", "not a pip release"),
    ("command substitution in the get-pip URL", GOOD_URL, GOOD_URL + "$(id)",
     21, "versions[0].pip.url", "not an https URL"),
    ("query string in the get-pip URL", GOOD_URL, GOOD_URL + "?a=1&b=2",
     21, "versions[0].pip.url", "not an https URL"),
    ("plain http get-pip URL", GOOD_URL, GOOD_URL.replace("https", "http"),
     21, "versions[0].pip.url", "not an https URL"),
    ("backtick in the fingerprint", "E3FF2839C048B25C084DEBE9B26995E310250568",
     "E3FF2839`id`B25C084DEBE9B26995E310250568", 18, "versions[0].gpg-key", "40 upper-case hex"),
    ("dollar in the base image", "from: busybox:latest", "from: busybox:${TAG}",
     7, "variants.buster.from", "not an image reference"),
    ("semicolon in an alias", "aliases: [3, latest]", "aliases: [3, 'latest;id']",
     17, "versions[0].aliases[1]", "not a tag"),
    ("directory escaping the tree", "directory: windows/windowsservercore-1809", "directory: ../../etc",
     11, "variants.windowsservercore-1809.directory", "not a relative path"),
    ("a list where a value belongs", "version: 3.8.0", "version: [3.8.0]",
     16, "versions[0].version", "single value"),
    ("empty variant list", "[buster, windowsservercore-1809]", "[]",
     23, "versions[0].variants", "must not be empty"),
    ("two versions answer to one alias", "    variants: [buster, windowsservercore-1809]\n",
     "    variants: [buster, windowsservercore-1809]\n  - version: 3.7.5\n    aliases: [latest]\n"
     "    variants: [buster]\n", 25, "versions[1].aliases[0]", "already names version 3.8.0"),
    # Today's fields.
    ("tarball sha256 too short", VARIANTS_LINE, "    sha256: de414a57\n" + VARIANTS_LINE,
     23, "versions[0].sha256", "64 lower-case hex digits"),
    ("Windows sha256 in upper case", VARIANTS_LINE, "    windows-sha256: " + "DE41" * 16 + "\n" + VARIANTS_LINE,
     23, "versions[0].windows-sha256", "64 lower-case hex digits"),
    ("shell in the keyserver", VARIANTS_LINE, "    keyserver: 'keys.openpgp.org; id'\n" + VARIANTS_LINE,
     23, "versions[0].keyserver", "not a keyserver"),
    ("a version's suite it does not ship", VARIANTS_LINE, "    debian-suite: trixie\n" + VARIANTS_LINE,
     23, "versions[0].debian-suite", "not a Linux variant of this version"),
    ("a version's alpine a Windows variant", VARIANTS_LINE, "    alpine: windowsservercore-1809\n" + VARIANTS_LINE,
     23, "versions[0].alpine", "not a Linux variant of this version"),
    ("upper case in a repository path", "from: busybox:latest", "from: Library/busybox:latest",
     7, "variants.buster.from", "not an image reference"),
    ("a port that is not a number", "from: busybox:latest", "from: registry.internal:http/busybox",
     7, "variants.buster.from", "not an image reference"),
    ("an empty tag", "from: busybox:latest", "from: 'busybox:'",
     7, "variants.buster.from", "not an image reference"),
    ("a tag too long", "aliases: [3, latest]", "aliases: [3, " + "x" * 125 + "]",
     23, "versions[0].variants[0]", "at most 128"),
    ("a tag starting with a dash", "aliases: [3, latest]", "aliases: [3, latest-]",
     23, "versions[0].variants[0]", "'-buster' of 3.8.0 buster is not a valid tag"),
    ("free-threaded not true or false", "    template: busybox\n",
     "    template: busybox\n    free-threaded: yes-please\n", 7, "variants.buster.free-threaded",
     "not true or false"),
    ("free-threaded without the -freethreaded name", "    template: busybox\n",
     "    template: busybox\n    free-threaded: true\n", 7, "variants.buster.free-threaded",
     "buster-freethreaded, not buster"),
    ("free-threaded Windows", "    os-version: 10.0.17763\n",
     "    os-version: 10.0.17763\n    free-threaded: true\n", 15,
     "variants.windowsservercore-1809.free-threaded", "no free-threaded build"),
    ("one tag for two versions", VARIANTS_LINE, VARIANTS_LINE + "  - version: 3.7.5\n    aliases: [buster]\n"
     "    variants: [buster]\n", 26, "versions[1].variants[0]",
     "tag 'buster' of 3.7.5 buster is also a tag of 3.8.0 buster"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "versions.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_valid_document_loads(tmp_path):
    family = load(write(tmp_path, VALID), TINY / "templates")
    [version] = family.versions
    assert (version.full, version.series, version.aliases) == ("3.8.0", "3.8", ("3", "latest"))
    assert version.pip.version == "19.3"
    buster, windows = version.variants
    assert [p.name for p in buster.platforms] == ["amd64", "arm64v8"]
    assert windows.is_windows and windows.platforms[0].os_version == "10.0.17763"
    assert family.default_debian_suite == "buster" and family.default_alpine is None


def test_the_git_repository_and_the_image_page_are_kept_for_the_annotations(tmp_path):
    text = VALID.replace("repository: demo\n", "repository: demo\n"
                         "git-repo: https://github.com/example/demo.git\n"
                         "image-url: https://hub.example.org/_/demo\n")
    family = load(write(tmp_path, text), TINY / "templates")
    assert family.extra == {"git-repo": "https://github.com/example/demo.git",
                            "image-url": "https://hub.example.org/_/demo"}


@pytest.mark.parametrize("case, old, new, line, field, words", BAD_INPUT,
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_one_line_naming_line_and_field(tmp_path, case, old, new, line, field, words):
    assert old in VALID, "the table no longer matches the document"
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(InputError) as caught:
        load(path, TINY / "templates")
    error = caught.value
    assert (error.line, error.field) == (line, field)
    assert words in error.message
    expected_start = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert str(error).startswith(expected_start) and "\n" not in str(error)
    assert error.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("reference", [
    "registry.internal:5000/debian:trixie-slim", "localhost/busybox", "localhost:5000/a/b/c:1.0",
    "[::1]:5000/busybox:latest", "mcr.microsoft.com/windows/servercore:ltsc2025",
    "busybox@sha256:" + "ab" * 32, "my_org/some__name:v1.0-rc_1", "a.b-c/x-y.z:T" + "a" * 127,
])
def test_any_valid_image_reference_is_accepted(tmp_path, reference):
    text = VALID.replace("from: busybox:latest", f"from: '{reference}'")
    [buster, _] = load(write(tmp_path, text), TINY / "templates").versions[0].variants
    assert buster.base_image == reference


def test_two_variants_of_one_version_cannot_share_a_tag(tmp_path):
    """slim-buster gets the short `-slim` tags of the default suite; a variant named slim too."""
    text = VALID.replace("  windowsservercore-1809:\n", "  slim-buster: {template: busybox, "
                         "from: busybox, platforms: [amd64]}\n  slim: {template: busybox, "
                         "from: busybox, platforms: [amd64]}\n  windowsservercore-1809:\n", 1)
    text = text.replace("[buster, windowsservercore-1809]", "[buster, slim-buster, slim]")
    with pytest.raises(InputError) as caught:
        load(write(tmp_path, text), TINY / "templates")
    assert (caught.value.line, caught.value.field) == (25, "versions[0].variants[2]")
    assert caught.value.message.startswith(
        "tag '3.8.0-slim' of 3.8.0 slim is also a tag of 3.8.0 slim-buster")


def test_a_version_sets_its_own_default_suite_and_alpine(tmp_path):
    text = VALID.replace("  windowsservercore-1809:\n", "  slim-trixie: {template: busybox, "
                         "from: 'registry.internal:5000/debian:trixie-slim', platforms: [amd64]}\n"
                         "  trixie: {template: busybox, from: busybox, platforms: [amd64]}\n"
                         "  windowsservercore-1809:\n", 1)
    text = text.replace("    variants: [buster, windowsservercore-1809]\n",
                        "    variants: [trixie, slim-trixie, windowsservercore-1809]\n"
                        "    debian-suite: trixie\n    keyserver: hkp://127.0.0.1:11371\n"
                        "  - version: 3.7.5\n    variants: [buster, windowsservercore-1809]\n")
    family = load(write(tmp_path, text), TINY / "templates")
    new, old = family.versions
    assert (new.debian_suite, family.debian_suite(new), family.debian_suite(old)) == \
        ("trixie", "trixie", "buster")
    assert new.keyserver == "hkp://127.0.0.1:11371" and old.keyserver is None
    assert new.variant("slim-trixie").base_image == "registry.internal:5000/debian:trixie-slim"


def test_numbers_stay_as_written(tmp_path):
    """3.10 must not become the float 3.1, nor an unquoted pip 19.10 become 19.1."""
    text = VALID.replace('version: "19.3"', "version: 19.10").replace("aliases: [3, latest]",
                                                                      "aliases: [3.10]")
    version = load(write(tmp_path, text), TINY / "templates").versions[0]
    assert version.pip.version == "19.10" and version.aliases == ("3.10",)


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load(write(tmp_path, "# nothing yet\n"), TINY / "templates")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_templates_default_to_the_directory_next_to_the_file(tiny_family_path):
    family = load(tiny_family_path)
    assert family.templates == tiny_family_path.parent / "templates"
    assert family.repository == "tiny"
    assert [v.full for v in family.versions] == ["1.0.0", "0.9.1"]


def test_the_python_family():
    family = load(ROOT / "versions.yaml")
    assert [v.full for v in family.versions] == ["3.14.7", "3.13.14", "3.8.0", "3.7.5"]
    for newest in family.versions[:2]:
        assert [v.name for v in newest.variants] == [
            "trixie", "slim-trixie", "bookworm", "slim-bookworm", "alpine3.24", "alpine3.23",
            *(("trixie-freethreaded", "slim-trixie-freethreaded") if newest.series == "3.14" else ()),
            "windowsservercore-ltsc2025", "windowsservercore-ltsc2022"]
        assert (family.debian_suite(newest), family.alpine(newest)) == ("trixie", "alpine3.24")
        assert newest.keyserver == "hkps://keys.openpgp.org" and newest.pip is None
        assert [p.name for p in newest.variant("bookworm").platforms] == [
            "amd64", "arm32v7", "arm64v8", "i386", "ppc64le"]
    assert family.version("3.14").aliases == ("3", "latest") and family.version("3.14").gpg_key is None
    assert family.version("3.13").gpg_key == "7169605F62C751356D054A26A821E680E5FA6305"
    newest = family.version("3.8.0")
    assert newest.aliases == () and newest.keyserver == "ha.pool.sks-keyservers.net"
    assert (family.debian_suite(newest), family.alpine(newest)) == ("buster", "alpine3.10")
    assert [v.name for v in newest.variants] == [
        "buster", "slim-buster", "alpine3.10", "windowsservercore-ltsc2016",
        "windowsservercore-1803", "windowsservercore-1809"]
    assert [p.name for p in newest.variant("alpine3.10").platforms] == [
        "amd64", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x"]
    assert {v.name: v.platforms[0].os_version for v in newest.variants if v.is_windows} == {
        "windowsservercore-ltsc2016": "10.0.14393", "windowsservercore-1803": "10.0.17134",
        "windowsservercore-1809": "10.0.17763"}


def test_generate_with_bad_input_exits_2_and_touches_nothing(tmp_path):
    bad = write(tmp_path, VALID.replace("version: 3.8.0", "version: 3.8"))
    out = tmp_path / "tree"
    (out / "3.8" / "buster").mkdir(parents=True)
    (out / "3.8" / "buster" / "Dockerfile").write_text("FROM scratch\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = invoke("generate", "--versions", str(bad), "--templates", str(TINY / "templates"),
                    "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == f"error: {bad}:16: versions[0].version: '3.8' is not a release number " \
                            "such as 3.8.0 or 3.9.0a1\n"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_free_threaded_variant_is_tagged_with_a_t_and_never_latest(tmp_path):
    from builder.model.tags import variant_tags

    text = VALID.replace("  windowsservercore-1809:\n", "  buster-freethreaded:\n"
                         "    template: busybox\n    from: busybox:latest\n"
                         "    platforms: [amd64]\n    free-threaded: true\n"
                         "  windowsservercore-1809:\n").replace(
        VARIANTS_LINE, "    variants: [buster, buster-freethreaded, windowsservercore-1809]\n")
    family = load(write(tmp_path, text), TINY / "templates")
    [version] = family.versions
    plain, free, _ = version.variants
    assert (plain.free_threaded, plain.stem) == (False, "buster")
    assert (free.free_threaded, free.stem) == (True, "buster")
    tags = variant_tags(family, version, free)
    assert tags.tags == ("3.8.0t-buster", "3.8t-buster", "3t-buster", "3.8.0t", "3.8t", "3t")
    assert tags.shared_tags == ()  # no Windows build shares them
    assert "latest" in variant_tags(family, version, plain).shared_tags
