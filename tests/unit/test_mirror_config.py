"""The pure parts of the source mirror: its layout, the `mirrors:` section, the rewrite."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder.model import yamldoc
from builder.model.errors import InputError
from builder.plan.dockerfile import needs_host_network, rewrite_urls
from builder.mirror import layout
from builder.model import mirrors as config
from builder.mirror.deb822 import choose_source, dsc_name, parse_dsc, parse_showsrc

DOCKERFILE = """\
FROM debian:trixie-slim
RUN wget -O python.tar.xz "https://www.python.org/ftp/python/${PYTHON_VERSION%%[a-z]*}/Python-$PYTHON_VERSION.tar.xz"; \\
	gpg --batch --keyserver hkps://keys.openpgp.org --recv-keys "$GPG_KEY"; \\
	gpg --keyserver hkps://keys.openpgp.org:8443 --recv-keys x; curl https://www.python.org/downloads/
"""


def _parse(tmp_path: Path, text: str, env: dict | None = None):
    path = tmp_path / "builders.yaml"
    path.write_text(text)
    doc = yamldoc.load(path)
    return config.parse(doc, doc.root["mirrors"], ("mirrors",), env or {})


def test_layout_is_python_orgs():
    assert layout.tarball_path("3.14.10") == "python/3.14.10/Python-3.14.10.tar.xz"
    assert layout.signature_path("3.15.0b3") == "python/3.15.0/Python-3.15.0b3.tar.xz.asc"
    assert layout.key_path("7169605F62C751356D054A26A821E680E5FA6305") == \
        "keys/7169605F62C751356D054A26A821E680E5FA6305.asc"
    assert layout.debian_orig_name("3.13.5") == "python3.13_3.13.5.orig.tar.xz"


def test_hkp_search_by_fingerprint_or_key_id():
    keys = ["7169605F62C751356D054A26A821E680E5FA6305", "A035C8C19219BA821ECEA86B64E628F8D684696D"]
    assert layout.lookup_key("0x7169605F62C751356D054A26A821E680E5FA6305", keys) == keys[0]
    assert layout.lookup_key("0x64e628f8d684696d", keys) == keys[1]
    assert layout.lookup_key("0x1234", keys) is None
    assert layout.lookup_key("../etc/passwd", keys) is None


def test_rewrite_maps_prefixes_and_whole_keyserver_hosts_only():
    mirrors = config.served("http://127.0.0.1:8600")
    text, used = rewrite_urls(DOCKERFILE, mirrors)
    assert "http://127.0.0.1:8600/python/${PYTHON_VERSION%%[a-z]*}/Python-" in text
    assert "--keyserver hkp://127.0.0.1:8600 --recv-keys" in text
    assert "hkps://keys.openpgp.org:8443" in text  # another port is another server
    assert "https://www.python.org/downloads/" in text  # outside the prefix
    assert [m.name for m in used] == ["python-org", "keyserver"]
    assert needs_host_network(used)


def test_rewrite_without_matches_changes_nothing():
    text, used = rewrite_urls("FROM busybox\nRUN true\n", config.served("http://10.0.0.5:8600"))
    assert (text, used) == ("FROM busybox\nRUN true\n", ())
    assert not needs_host_network(config.served("http://10.0.0.5:8600"))


def test_parse_and_environment_override(tmp_path):
    text = ("mirrors:\n"
            "  - name: python-org\n    upstream: https://www.python.org/ftp/python/\n"
            "    url: http://127.0.0.1:8600/python/\n"
            "  - name: keyserver\n    upstream: hkps://keys.openpgp.org\n    url: hkp://127.0.0.1:8600\n")
    assert _parse(tmp_path, text) == config.served("http://127.0.0.1:8600")
    env = {config.env_name("python-org"): "http://mirror.internal/python/"}
    assert config.env_name("python-org") == "BUILDER_MIRROR_PYTHON_ORG_URL"
    assert _parse(tmp_path, text, env)[0].url == "http://mirror.internal/python/"


@pytest.mark.parametrize("entry, message", [
    ("{name: a, upstream: https://x.org/p/, url: http://m/p}", "mirrors[0].url: 'http://m/p' and upstream"),
    ("{name: a, upstream: 'https://x.org/$(id)/', url: http://m/}", "mirrors[0].upstream: 'https://x.org/$(id)/' is not a URL"),
    ("{name: a, upstream: https://x.org/, url: http://m/, extra: 1}", "mirrors[0].extra: unknown key"),
    ("{name: b, upstream: https://x.org/, url: http://m/}", "mirrors[0].name: mirror name 'b' is used twice"),
])
def test_parse_errors_name_line_and_field(tmp_path, entry, message):
    with pytest.raises(InputError) as caught:
        _parse(tmp_path, f"mirrors:\n  - {{name: b, upstream: https://y.org/, url: http://n/}}\n  - {entry}\n")
    assert str(caught.value).startswith(str(tmp_path / "builders.yaml") + ":3: ")
    assert message.replace("mirrors[0]", "mirrors[1]") in str(caught.value)


SHOWSRC = """\
Package: python3.13
Version: 3.13.15-1
Checksums-Sha256:
 1e66 100 python3.13_3.13.15.orig.tar.xz
 aaaa 10 python3.13_3.13.15-1.debian.tar.xz

Package: python3.13
Version: 3.13.5-2+deb13u5
Checksums-Sha256:
 93e5 200 python3.13_3.13.5.orig.tar.xz
 bbbb 9 python3.13_3.13.5.orig.tar.xz.asc
"""


def test_the_debian_source_holding_the_upstream_tarball_is_chosen():
    entries = parse_showsrc(SHOWSRC)
    assert [e.version for e in entries] == ["3.13.15-1", "3.13.5-2+deb13u5"]
    assert dict(entries[1].files)["python3.13_3.13.5.orig.tar.xz"] == "93e5"
    assert choose_source(entries, "3.13.5").version == "3.13.5-2+deb13u5"
    assert choose_source(entries, "3.13.6") is None


# The signed part of python3.14_3.14.7-1.dsc as gpgv writes it out (fields shortened).
DSC = """\
Format: 3.0 (quilt)
Source: python3.14
Binary: python3.14, python3.14-venv,
 libpython3.14-stdlib
Version: 3.14.7-1
Checksums-Sha1:
 1239d153c968b5fa1958963acd350a42b73d895b 24053924 python3.14_3.14.7.orig.tar.xz
Checksums-Sha256:
 3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81 24053924 python3.14_3.14.7.orig.tar.xz
 43187e8f368dfdcb77ef1f879c50dcacfb1438ca01657859f2a06cfaf9c3cd2a 223864 python3.14_3.14.7-1.debian.tar.xz
Files:
 a4c4c2991b4126e227073c2d9445f432 24053924 python3.14_3.14.7.orig.tar.xz
"""


def test_a_dsc_reads_as_its_source_version_and_sha256_files():
    entry = parse_dsc(DSC)
    assert (entry.package, entry.version) == ("python3.14", "3.14.7-1")
    assert entry.files == (
        ("python3.14_3.14.7.orig.tar.xz",
         "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81"),
        ("python3.14_3.14.7-1.debian.tar.xz",
         "43187e8f368dfdcb77ef1f879c50dcacfb1438ca01657859f2a06cfaf9c3cd2a"))
    assert parse_dsc(DSC.replace("Source: python3.14\n", "")) is None


def test_the_dsc_of_a_release_is_the_indexs_upload_else_its_first():
    entries = parse_showsrc(SHOWSRC)
    assert dsc_name("3.13.5", entries) == "python3.13_3.13.5-2+deb13u5.dsc"
    assert dsc_name("3.13.14", entries) == "python3.13_3.13.14-1.dsc"
    assert dsc_name("3.14.7", []) == "python3.14_3.14.7-1.dsc"


def test_update_from_debian_tries_the_releases_after_the_current_newest_first():
    from builder.update.debian import candidates, listed_releases

    entries = parse_showsrc(SHOWSRC)
    assert listed_releases(entries, "3.13") == ["3.13.15", "3.13.5"]
    assert listed_releases(entries, "3.14") == []
    assert candidates("3.14.10", "3.14.6") == ["3.14.10", "3.14.9", "3.14.8", "3.14.7"]
    assert candidates("3.13.15", "3.13.14") == ["3.13.15"]
