"""CPython's own SBOM (Misc/sbom.spdx.json) read from the source tarball the build fetched,
through the mirror that stood in for python.org: served here by a real HTTP server, as the
source mirror serves it, with tarballs made for the test."""
from __future__ import annotations

import io
import json
import lzma
import tarfile
import threading
from functools import partial
from types import SimpleNamespace
from hashlib import sha256
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from builder.attest.sbom import Source
from builder.attest.inventory import Inventory
from builder.farm.attestations import cpython_sbom, with_cpython_sbom
from builder.model.errors import AttestationError
from builder.model.mirrors import PYTHON_ORG, Mirror

COMPONENTS = {"spdxVersion": "SPDX-2.3", "packages": [{"name": "expat", "versionInfo": "2.7.1"}]}


def tarball(version: str, sbom: dict | None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        files = {f"Python-{version}/README.rst": b"This is Python\n"}
        if sbom is not None:
            files[f"Python-{version}/Misc/sbom.spdx.json"] = json.dumps(sbom).encode()
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return lzma.compress(raw.getvalue())


@pytest.fixture
def served(tmp_path):
    """A mirror of python.org's layout on loopback; (its Mirror, the directory it serves)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Mirror("python-org", PYTHON_ORG, f"http://127.0.0.1:{server.server_port}/python/"), \
        tmp_path
    server.shutdown()


def put(directory, version: str, data: bytes) -> Source:
    path = directory / "python" / version / f"Python-{version}.tar.xz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Source(version, f"{PYTHON_ORG}{version}/Python-{version}.tar.xz",
                  sha256(data).hexdigest())


def test_the_components_come_from_the_mirrored_tarball_with_the_pinned_sha256(served):
    mirror, directory = served
    source = put(directory, "9.1.1", tarball("9.1.1", COMPONENTS))
    assert cpython_sbom(source, [mirror]) == COMPONENTS


def test_a_tarball_of_another_sha256_is_refused_naming_both(served):
    mirror, directory = served
    source = put(directory, "9.1.2", tarball("9.1.2", COMPONENTS))
    pinned = "0" * 64
    with pytest.raises(AttestationError) as raised:
        cpython_sbom(Source(source.version, source.url, pinned), [mirror])
    assert pinned in str(raised.value) and source.sha256 in str(raised.value)
    assert mirror.url in str(raised.value)


def test_a_release_that_ships_no_sbom_gives_none(served):
    mirror, directory = served
    assert cpython_sbom(put(directory, "9.1.3", tarball("9.1.3", None)), [mirror]) is None


def test_an_unreachable_tarball_fails_naming_its_url(served):
    mirror, _ = served
    with pytest.raises(AttestationError, match="9.1.4/Python-9.1.4.tar.xz"):
        cpython_sbom(Source("9.1.4", f"{PYTHON_ORG}9.1.4/Python-9.1.4.tar.xz", None), [mirror])


def _job(version: str, sha: str | None) -> SimpleNamespace:
    """What `with_cpython_sbom` reads of a job whose Dockerfile fetches CPython's tarball."""
    return SimpleNamespace(
        version=SimpleNamespace(full=version, release=version, sha256=sha),
        dockerfile_text=f"RUN curl -fsSL {PYTHON_ORG}{version}/Python-{version}.tar.xz\n")


def test_the_inventory_gets_the_components_before_the_push_or_the_job_fails_saying_so(served):
    """The job's inventory phase (before its push) completes what the image held with the
    tarball's components; when the tarball cannot be had, the job fails with nothing pushed."""
    mirror, directory = served
    source = put(directory, "9.1.5", tarball("9.1.5", COMPONENTS))
    held = Inventory("dpkg", (), "9.1.5", (), None, {})
    assert with_cpython_sbom(held, _job("9.1.5", source.sha256),
                             [mirror]).cpython_sbom == COMPONENTS
    with pytest.raises(AttestationError, match=r"9\.1\.6/Python-9\.1\.6\.tar\.xz.*; nothing was "
                                               r"pushed$"):
        with_cpython_sbom(held, _job("9.1.6", None), [mirror])
