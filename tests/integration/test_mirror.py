"""The source mirror against the real parts: Debian's archive, gpg, the HTTP/HKP server, the
engine building through it.

The Debian download (~23 MB) is kept in the test bed's cache dir, so a warm run downloads
nothing; each test fills or copies its own mirror tree.
"""
from __future__ import annotations

import io
import shutil
import socket
import uuid
from pathlib import Path

import pytest
import requests

from builder.model import versions
from builder.model.errors import InputError, VerificationError
from builder.plan.dockerfile import needs_host_network, rewrite_urls
from builder.mirror import fill, layout, serve
from builder.mirror.debian import DebianArchive
from builder.model import mirrors as config
from builder.mirror.verify import key_fingerprints, sha256_file
from testbed.paths import cache_dir
from tests.helpers.paths import MIRROR_FAMILY

FINGERPRINT = "7169605F62C751356D054A26A821E680E5FA6305"  # Thomas Wouters, 3.12/3.13
OTHER_FINGERPRINT = "A035C8C19219BA821ECEA86B64E628F8D684696D"  # Pablo Galindo, 3.10/3.11
TOOLS_TAG = "pib-test/mirror-tools:trixie"


def _wanted(version: str = "3.13.5") -> fill.Wanted:
    return fill.wanted_versions(versions.load(MIRROR_FAMILY), (version,))[0][0]


def _tree(directory: Path) -> dict[str, str]:
    """Every served file of a mirror and its sha256: what "unchanged" means."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and layout.WORK not in p.relative_to(directory).parts}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def debian():
    """The Debian provider with its apt state and downloads in the test bed's cache."""
    return DebianArchive(cache_dir() / "source-mirror-work")


@pytest.fixture(scope="module")
def filled(tmp_path_factory, debian) -> Path:
    directory = tmp_path_factory.mktemp("filled")
    fill.fill(directory, [_wanted()], debian)
    return directory


@pytest.fixture
def served(filled, tmp_path):
    """A copy of the filled mirror, served on a free port (a test may tamper with its copy)."""
    directory = tmp_path / "mirror"
    shutil.copytree(filled, directory, ignore=shutil.ignore_patterns(layout.WORK))
    url = serve.start(directory, _free_port())
    yield directory, url
    serve.stop(directory)


def test_fill_from_debians_archive_verifies_and_a_second_fill_reuses_it(filled, debian, capsys):
    tarball = filled / "python/3.13.5/Python-3.13.5.tar.xz"
    assert sha256_file(tarball) == _wanted().sha256
    assert (filled / "python/3.13.5/Python-3.13.5.tar.xz.asc").is_file()
    assert key_fingerprints(filled / layout.key_path(FINGERPRINT)) == [FINGERPRINT]
    before = _tree(filled)
    assert fill.fill(filled, [_wanted()], debian) == []
    assert "python/3.13.5/Python-3.13.5.tar.xz: up to date" in capsys.readouterr().out
    assert _tree(filled) == before


def test_a_tarball_of_another_sha256_is_refused_and_the_mirror_is_unchanged(filled, debian, tmp_path):
    directory = tmp_path / "mirror"
    shutil.copytree(filled, directory)
    before = _tree(directory)
    wrong = fill.Wanted("3.13.5", "0" * 64, FINGERPRINT)
    with pytest.raises(VerificationError) as caught:
        fill.fill(directory, [wrong], debian)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 1
    assert "python3.13_3.13.5.orig.tar.xz" in message
    assert _wanted().sha256 in message and "0" * 64 in message
    assert _tree(directory) == before


def test_a_key_of_another_fingerprint_is_refused_and_the_mirror_is_unchanged(debian, tmp_path):
    directory = tmp_path / "mirror"
    (directory / "python").mkdir(parents=True)
    wrong = fill.Wanted("3.13.5", _wanted().sha256, OTHER_FINGERPRINT)
    with pytest.raises(VerificationError) as caught:
        fill.fill(directory, [wrong], debian)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 1
    assert f"key fingerprint {FINGERPRINT} is not {OTHER_FINGERPRINT}" in message
    assert _tree(directory) == {}


def test_an_upstream_layout_url_fills_another_mirror_verified(served, tmp_path):
    directory, url = served
    provider = fill.UpstreamURL(f"{url}/python/", tmp_path / "work", keys_url=f"{url}/keys/")
    other = tmp_path / "other"
    assert len(fill.fill(other, [_wanted()], provider)) == 1
    assert _tree(other) == _tree(directory)
    unsigned = tmp_path / "unsigned"  # as a 3.14+ series (PEP 761): the tarball alone
    assert len(fill.fill(unsigned, [fill.Wanted("3.13.5", _wanted().sha256, None)], provider)) == 1
    assert list(_tree(unsigned)) == [layout.tarball_path("3.13.5")]


def test_the_server_answers_hkp_and_a_second_start_finds_it(served, capsys):
    directory, url = served
    port = int(url.rsplit(":", 1)[1])
    assert serve.start(directory, port) == url
    assert "already answers" in capsys.readouterr().out
    key = requests.get(f"{url}/pks/lookup", params={"op": "get", "options": "mr",
                                                     "search": f"0x{FINGERPRINT}"}, timeout=10)
    assert key.status_code == 200 and key.headers["Content-Type"] == "application/pgp-keys"
    assert key.content == (directory / layout.key_path(FINGERPRINT)).read_bytes()
    assert requests.get(f"{url}/pks/lookup?op=get&search=0x{OTHER_FINGERPRINT}", timeout=10).status_code == 404
    assert requests.get(f"{url}/.work/serve.pid", timeout=10).status_code == 404


def test_a_start_for_another_tree_on_a_served_port_is_refused(served, tmp_path):
    directory, url = served
    port = int(url.rsplit(":", 1)[1])
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError) as caught:
        serve.start(tmp_path / "other", port)
    assert f"{url} serves another mirror, {directory.resolve()}" in str(caught.value)
    assert caught.value.exit_code == 2


# --- builds through the mirror (the engine) ------------------------------------------------

@pytest.fixture(scope="module")
def tools_image(docker_client, mirror) -> str:
    """Debian trixie with wget and gpg, from the test bed's base mirror (layer-cached)."""
    dockerfile = (f"FROM {mirror.host}/library/debian:trixie\n"
                  "RUN apt-get update && apt-get install -y --no-install-recommends "
                  "ca-certificates dirmngr gnupg wget && rm -rf /var/lib/apt/lists/*\n")
    _build(docker_client, dockerfile, TOOLS_TAG, nocache=False)
    return TOOLS_TAG


def _build(client, dockerfile: str, tag: str, *, nocache: bool = True) -> tuple[bool, list[str]]:
    """Build `dockerfile` with host networking (how a build reaches a loopback mirror)."""
    log, ok = [], True
    for chunk in client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True,
                                  forcerm=True, decode=True, network_mode="host", nocache=nocache):
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            log.append(chunk["error"])
            ok = False
    if tag == TOOLS_TAG:
        assert ok, "".join(log)
    return ok, "".join(log).splitlines()


DOWNLOAD_AND_VERIFY = f"""\
FROM {TOOLS_TAG}
ENV GPG_KEY {FINGERPRINT}
ENV PYTHON_VERSION 3.13.5
ENV PYTHON_SHA256 93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
WORKDIR /src
RUN wget -q -O python.tar.xz "https://www.python.org/ftp/python/$PYTHON_VERSION/Python-$PYTHON_VERSION.tar.xz" \\
	&& echo "$PYTHON_SHA256 *python.tar.xz" | sha256sum -c -
RUN wget -q -O python.tar.xz.asc "https://www.python.org/ftp/python/$PYTHON_VERSION/Python-$PYTHON_VERSION.tar.xz.asc" \\
	&& export GNUPGHOME="$(mktemp -d)" \\
	&& gpg --batch --keyserver hkps://keys.openpgp.org --recv-keys "$GPG_KEY" \\
	&& gpg --batch --verify python.tar.xz.asc python.tar.xz \\
	&& gpgconf --kill all && rm -rf "$GNUPGHOME"
"""


def _failed_step(log: list[str]) -> str:
    return [line for line in log if line.startswith("Step ")][-1]


def test_gpg_in_a_build_fetches_the_key_from_the_hkp_endpoint(docker_client, tools_image, served):
    _, url = served
    dockerfile = (f"FROM {tools_image}\nRUN export GNUPGHOME=\"$(mktemp -d)\" && gpg --batch "
                  f"--keyserver hkps://keys.openpgp.org --recv-keys {FINGERPRINT} "
                  f"&& gpg --batch --list-keys {FINGERPRINT}\n")
    sent, used = rewrite_urls(dockerfile, config.served(url))
    assert [m.name for m in used] == ["keyserver"] and needs_host_network(used)
    assert "hkps://" not in sent
    ok, log = _build(docker_client, sent, f"pib-test/mirror-gpg:{uuid.uuid4().hex[:8]}")
    assert ok, "\n".join(log)
    assert any("Thomas Wouters" in line for line in log)
    docker_client.images.remove(_tag_of(log), force=True)


def _tag_of(log: list[str]) -> str:
    return next(line.split()[-1] for line in log if line.startswith("Successfully tagged"))


def test_a_build_through_the_mirror_verifies_and_a_tampered_tarball_fails_its_step(
        docker_client, tools_image, served):
    directory, url = served
    sent, used = rewrite_urls(DOWNLOAD_AND_VERIFY, config.served(url))
    assert [m.name for m in used] == ["python-org", "keyserver"]
    assert "www.python.org" not in sent and DOWNLOAD_AND_VERIFY.count("www.python.org") == 2
    tag = f"pib-test/mirror-build:{uuid.uuid4().hex[:8]}"
    ok, log = _build(docker_client, sent, tag)
    assert ok, "\n".join(log)
    assert any("python.tar.xz: OK" in line for line in log)
    assert any("Good signature" in line for line in log)
    docker_client.images.remove(tag, force=True)

    with (directory / layout.tarball_path("3.13.5")).open("ab") as tarball:
        tarball.write(b"tampered")
    ok, log = _build(docker_client, sent, tag)
    assert not ok
    step = _failed_step(log)
    assert step.startswith("Step 6/7 : RUN wget") and "sha256sum -c" in step
    assert any("FAILED" in line for line in log)
    assert "returned a non-zero code: 1" in log[-1]
