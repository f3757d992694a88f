"""The real thing: python:3.14-slim built from verified sources through the local mirrors,
smoke-tested, pushed, published and paged, by the README's first command in a fresh clone.

Marked `realbuild`: it compiles CPython with PGO and LTO, minutes with a warm layer cache and
about 25 on a cold machine for amd64 alone. While iterating, skip it with
`scripts/test -m 'not slow and not realbuild'`; the default run and CI include it. CI builds
amd64 only (REALBUILD_PLATFORMS, default "amd64") to stay inside its budget on a cold
machine; scripts/demo as a user runs it builds amd64 and i386.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.mirror import serve
from builder.commands.mirror import DEFAULT_DIR
from builder.model.platforms import platform
from builder.model.versions import load
from builder.options import DEFAULT_MIRROR_PORT
from builder.registry.client import RegistryClient
from testbed.engine import local_client, remove_tags_of
from testbed.procs import free_port
from tests.helpers.attestations import provenances, sboms
from tests.helpers.builders import write_builders
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.realbuild

PLATFORMS = os.environ.get("REALBUILD_PLATFORMS", "amd64").split()
V3_14 = load(ROOT / "versions.yaml").version("3.14")  # the release the demo builds
DEMO_TIMEOUT = 3 * 3600  # a cold build of both platforms on 2 busy cores


def storage_snapshot(storage: Path) -> dict[str, tuple[int, int]]:
    """Every file of a registry's storage with its size and mtime: what a write would change."""
    return {str(p.relative_to(storage)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in storage.rglob("*") if p.is_file()}


def demo(clone: Path, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/demo"], cwd=clone, capture_output=True, text=True,
                          env={**os.environ, "DEMO_PORT": str(port),
                               "DEMO_PLATFORMS": " ".join(PLATFORMS)},
                          stdin=subprocess.DEVNULL, timeout=DEMO_TIMEOUT)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """scripts/demo twice in one fresh clone, on a registry of its own."""
    clone = tmp_path_factory.mktemp("real") / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    mirror_was_up = serve.answers(DEFAULT_MIRROR_PORT) is not None
    try:
        first = demo(clone, port)
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-4000:]
        report = json.loads((clone / "out" / "python-3.14.json").read_text())
        # Each run writes its jobs' logs anew: keep the first's, which built.
        logs = {job["platform"]: Path(clone, job["log"]).read_text() for job in report["jobs"]}
        storage = clone / ".cache" / "registry" / "storage"
        before = storage_snapshot(storage)
        second = demo(clone, port)
        yield {"clone": clone, "host": host, "first": first, "report": report, "second": second,
               "logs": logs,
               "second_report": json.loads((clone / "out" / "python-3.14.json").read_text()),
               "before": before, "after": storage_snapshot(storage)}
    finally:
        subprocess.run([str(clone / ".venv" / "bin" / "invoke"), "registry", "--stop"],
                       cwd=clone, capture_output=True)
        if not mirror_was_up:
            serve.stop(DEFAULT_DIR)
        remove_tags_of(local_client(), host)


def test_the_release_builds_smoke_tests_and_pushes_every_platform(released):
    report = released["report"]
    assert (report["exit_code"], report["stopped_at"]) == (0, None)
    jobs = {job["platform"]: job for job in report["jobs"]}
    assert sorted(jobs) == sorted(PLATFORMS)
    for job in jobs.values():
        assert job["status"] == "built", job["reason"]
        assert [(c["name"], c["result"]) for c in job["checks"]] == [
            (name, "passed") for name in ("python-version", "ssl", "modules", "pip-version",
                                          "pip-offline-install", "no-compiler",
                                          "no-package-cache")]
        assert job["checks"][0]["output"].strip() == f"Python {V3_14.full}"
        assert [m["name"] for m in job["mirrors"]] == ["python-org"]
        log = released["logs"][job["platform"]]
        # The Dockerfile as sent fetches from the mirror (the build itself may come from the
        # engine's layer cache, so its compiler lines need not be in the log).
        assert 'wget -O python.tar.xz "http://127.0.0.1:8600/python/' in log


def test_3_14_slim_is_a_list_of_the_built_platforms_and_each_image_runs(released, docker_client):
    host = released["host"]
    client = RegistryClient(host)
    manifest = client.get_manifest("python", "3.14-slim")
    assert manifest.is_list
    # scripts/demo releases with --attest: the images, then an attestation manifest for each.
    entries = [e for e in manifest.json["manifests"]
               if e["annotations"].get("vnd.docker.reference.type") != "attestation-manifest"]
    attestations = {e["annotations"]["vnd.docker.reference.digest"]: e
                    for e in manifest.json["manifests"] if e not in entries}
    assert [(e["platform"]["os"], e["platform"]["architecture"]) for e in entries] == [
        (platform(name).os, platform(name).architecture) for name in PLATFORMS]
    digests = {job["platform"]: job["digest"] for job in released["report"]["jobs"]}
    assert [e["digest"] for e in entries] == [digests[name] for name in PLATFORMS]
    assert set(attestations) == set(digests.values())
    for name in PLATFORMS:
        ran = docker_client.containers.run(
            f"{host}/python:3.14-slim", ["python3", "-c",
                                         "import ssl, sqlite3; print(ssl.OPENSSL_VERSION)"],
            remove=True, platform=platform(name).oci)
        assert ran.decode().startswith("OpenSSL 3.")
        # Built as rendered: profile-guided and link-time optimized, shared, pip from ensurepip.
        configured = docker_client.containers.run(
            f"{host}/python:3.14-slim", ["python3", "-c", "import sysconfig; "
                                         "print(sysconfig.get_config_var('CONFIG_ARGS'))"],
            remove=True, platform=platform(name).oci).decode()
        for flag in ("--enable-optimizations", "--with-lto", "--enable-shared", "--with-ensurepip"):
            assert flag in configured, configured
    tags = {t["tag"] for t in released["report"]["tags"]}
    assert {f"{V3_14.full}-slim-trixie", "3.14-slim", "3-slim", "slim"} <= tags


def test_each_image_carries_an_sbom_of_its_debian_packages_cpython_and_pip(released,
                                                                          docker_client):
    host = released["host"]
    found = sboms(RegistryClient(host), "python", "3.14-slim")
    assert len(found) == len(released["report"]["jobs"])
    for digest, statement in found.items():
        # Exactly the packages dpkg knows in that image, each at its version.
        listed = docker_client.containers.run(f"{host}/python@{digest}", ["dpkg-query", "-W"],
                                              remove=True, entrypoint=[]).decode()
        dpkg = {(name.split(":")[0], version)
                for name, version in (line.split("\t") for line in listed.splitlines())}
        assert {(p["name"], p["versionInfo"]) for p in statement["predicate"]["packages"]
                if p["SPDXID"].startswith("SPDXRef-dpkg-")} == dpkg
        packages = {p["name"]: p for p in statement["predicate"]["packages"]}
        assert packages["CPython"]["versionInfo"] == V3_14.full
        assert {"libc6", "ca-certificates", "pip"} <= set(packages), sorted(packages)
        # CPython's own SBOM (Misc/sbom.spdx.json of the tarball the build fetched).
        assert {"expat", "mpdecimal", "hacl-star"} <= set(packages), sorted(packages)


def test_each_provenance_names_the_base_by_digest_and_the_tarball_by_sha256(released):
    found = provenances(RegistryClient(released["host"]), "python", "3.14-slim")
    assert len(found) == len(released["report"]["jobs"])
    for statement in found.values():
        resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        digests = {d["uri"]: d.get("digest", {}).get("sha256") for d in resolved}
        assert any("debian" in uri and "@sha256:" in uri and sha for uri, sha in digests.items())
        assert digests[f"https://www.python.org/ftp/python/{V3_14.release}/"
                       f"Python-{V3_14.full}.tar.xz"] == V3_14.sha256


def test_the_summary_page_names_every_digest(released):
    page = (released["clone"] / "out" / "python" / "remote" / "3.14-slim.md").read_text()
    assert page.startswith(f"## `{released['host']}/python:3.14-slim`\n")
    for job in released["report"]["jobs"]:
        assert job["digest"] in page


def test_a_second_run_builds_nothing_and_writes_nothing_to_the_registry(released):
    second, report = released["second"], released["second_report"]
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-3000:]
    assert {job["status"] for job in report["jobs"]} == {"skipped"}
    assert all(job["reason"].startswith("unchanged") for job in report["jobs"])
    assert {tag["status"] for tag in report["tags"]} == {"unchanged"}
    assert released["after"] == released["before"]


def test_a_tampered_tarball_fails_at_its_sha256_step_and_nothing_is_pushed(
        released, registry, tmp_path):
    tampered = tmp_path / "mirror"
    shutil.copytree(DEFAULT_DIR / "python", tampered / "python")
    path = Path("python", V3_14.full, f"Python-{V3_14.full}.tar.xz")
    tarball = tampered / path
    tarball.unlink()  # a copy, not the shared mirror's file: write a changed one in its place
    data = bytearray((DEFAULT_DIR / path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))
    port = free_port()
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), "-m", "builder.mirror.serve",
                               str(tampered), str(port)], cwd=ROOT)
    try:
        builders = write_builders(tmp_path / "builders.yaml", released["host"],
                                  ("local", "unix:///var/run/docker.sock", ("amd64",)))
        builders.write_text(builders.read_text() + (
            "mirrors:\n"
            f"  - {{name: tampered, upstream: 'https://www.python.org/ftp/python/', "
            f"url: 'http://127.0.0.1:{port}/python/'}}\n"))
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "invoke"), "release", "--version", "3.14", "--variant",
             "slim-trixie", "--platform", "amd64", "--registry", registry.host, "--builders",
             str(builders), "--report", str(tmp_path / "report.json"), "--out",
             str(tmp_path / "out"), "--logs", str(tmp_path / "logs")],
            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stopped_at"] == "build"
    [job] = report["jobs"]
    assert job["status"] == "failed" and job["pushed"] == [] and job["checks"] == []
    # The sha256 step names itself: `set -x` traced its pipeline's two commands, in either
    # order, and their traces can interleave on one line, even word by word.
    sha256 = V3_14.sha256
    assert "step 6/9 (RUN set -eux;" in job["reason"] and "exit code 1 at `" in job["reason"]
    traced = job["reason"].split(" at `", 1)[1].split("`", 1)[0]
    assert "sha256sum" in traced or f"echo {sha256}" in traced, job["reason"]
    log = Path(job["log"]).read_text()
    assert "python.tar.xz: FAILED" in log
    client = RegistryClient(registry.host)
    assert client.head_manifest("python", f"{V3_14.full}-slim-trixie-amd64") is None
    assert client.head_manifest("python", "3.14-slim") is None
