"""The Debian bases made here, and the buildpack-deps family released FROM them.

Limited to trixie on amd64 (and buildpack-deps' curl variant) to stay quick; the rootfs
tarballs are cached in the test bed's cache dir (scripts/setup already made the minbase one).
On each engine kind (fixture build_engine): the containerd store pushes the bases as OCI
manifests, listed in an OCI index, and the family builds FROM them all the same.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from builder.attest.inventory import dpkg_packages
from builder.commands import bases
from builder.mirror.bases import rootfs as bases_rootfs
from builder.model.platforms import platform
from builder.model.reference import ACCEPT_ALL, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from builder.registry.client import RegistryClient
from testbed.paths import cache_dir
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT

BUILDPACK_DEPS = ROOT / "examples" / "buildpack-deps" / "versions.yaml"
AMD64 = (platform("amd64"),)


def _fill(client, registry, slim: bool) -> list[str]:
    out = io.StringIO()
    bases.ensure_debian(client, RegistryClient(registry.host), "trixie", slim, AMD64, cache_dir() / "debian",
                        out)
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def debian_bases(build_engine, kind_registry) -> dict[bool, list[str]]:
    """debian:trixie and debian:trixie-slim (amd64) in the kind's plain registry; the lines of
    the first fill, by slim."""
    return {slim: _fill(build_engine.client, kind_registry, slim) for slim in (False, True)}


def test_debian_bases_fill_and_a_second_fill_builds_nothing(debian_bases, build_engine,
                                                            kind_registry):
    registry = kind_registry
    assert any("library/debian:trixie-slim-amd64: built and pushed" in line
               for line in debian_bases[True])
    for slim in (False, True):
        again = _fill(build_engine.client, registry, slim)
        tag = "trixie-slim" if slim else "trixie"
        assert again == [f"library/debian:{tag}-amd64: up to date",
                         f"{registry.host}/library/debian:{tag}: up to date (amd64)"]
    listing = registry.get("/v2/library/debian/manifests/trixie-slim",
                           headers={"Accept": ", ".join(ACCEPT_ALL)}).json()
    member, list_type = ((DOCKER_MANIFEST, DOCKER_LIST) if build_engine.kind == "classic"
                         else (OCI_MANIFEST, OCI_INDEX))
    assert listing["mediaType"] == list_type
    assert [(m["platform"]["architecture"], m["mediaType"]) for m in listing["manifests"]] == \
        [("amd64", member)]


def test_the_slim_base_leaves_out_docs_but_copyright_man_pages_and_locales(debian_bases, build_engine,
                                                                            kind_registry):
    docker_client, registry = build_engine.client, kind_registry
    script = ("ls /usr/share/man /usr/share/locale 2>/dev/null | wc -l; "
              "find /usr/share/doc -type f ! -name copyright | wc -l; "
              "find /usr/share/doc -name copyright | wc -l; cat /etc/os-release")
    counts = {}
    for tag in ("trixie", "trixie-slim"):
        output = docker_client.containers.run(f"{registry.host}/library/debian:{tag}", ["sh", "-c", script],
                                              remove=True, network_mode="none", platform="linux/amd64")
        lines = output.decode().splitlines()
        assert "VERSION_CODENAME=trixie" in lines
        counts[tag] = [int(n) for n in lines[:3]]
    other_docs, copyrights = counts["trixie-slim"][1:3]
    assert other_docs == 0 and copyrights > 50
    assert counts["trixie"][1] > 0  # minbase itself has docs: the excludes did the work


def _curl_only(directory: Path) -> Path:
    """The example family cut down to trixie-curl on amd64 (so that every tag it has gets its
    image), with its tree generated from the example's templates."""
    document = yaml.safe_load(BUILDPACK_DEPS.read_text())
    curl = document["variants"]["trixie-curl"]
    document["variants"] = {"trixie-curl": {**curl, "platforms": ["amd64"]}}
    document["versions"][0]["variants"] = ["trixie-curl"]
    del document["defaults"]  # its default suite, trixie, is cut out
    path = directory / "versions.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    done = invoke("generate", "--versions", str(path), "--templates", str(BUILDPACK_DEPS.parent / "templates"))
    assert done.returncode == 0, done.stdout + done.stderr
    dockerfile = "1.0/debian/trixie/curl/Dockerfile"
    assert (directory / dockerfile).read_text() == (BUILDPACK_DEPS.parent / dockerfile).read_text()
    return path


def _release(registry, family: Path, builders: Path, report: Path) -> tuple[subprocess.CompletedProcess, dict]:
    result = invoke("release", "--version", "1.0.0", "--versions", str(family),
                    "--templates", str(BUILDPACK_DEPS.parent / "templates"),
                    "--registry", f"{registry.host}/library", "--builders", str(builders),
                    "--report", str(report), "--out", str(report.parent / "out"),
                    "--logs", str(report.parent / "logs"))
    return result, json.loads(report.read_text())


def test_buildpack_deps_releases_from_the_bases_and_a_rerun_skips_every_job(
        debian_bases, kind_registry, build_engine, tmp_path):
    registry, docker_client = kind_registry, build_engine.client
    family = _curl_only(tmp_path)
    builders = write_builders(tmp_path / "builders.yaml", registry.host, build_engine.spec("amd64"))
    first, report = _release(registry, family, builders, tmp_path / "first.json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert [(j["platform"], j["status"]) for j in report["jobs"]] == [("amd64", "built")]
    reference = f"{registry.host}/library/buildpack-deps:trixie-curl"
    output = docker_client.containers.run(reference, ["sh", "-c", "curl --version | head -1; for p in sq wget gpg; do command -v $p; done"],
                                          remove=True, network_mode="none", platform="linux/amd64")
    assert output.decode().startswith("curl ") and output.decode().count("/usr/bin/") == 3

    again, report = _release(registry, family, builders, tmp_path / "again.json")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert [j["status"] for j in report["jobs"]] == ["skipped"]
    assert all("unchanged" in (j.get("reason") or "") for j in report["jobs"])


def test_the_bookworm_base_is_merged_usr_without_usrmerge_and_its_perl(tmp_path):
    """Bookworm's init-system-helpers takes usrmerge unless the merged-usr hook sets /usr up:
    that would put the whole perl (46 MB) in every bookworm image, which Debian's have not."""
    made = bases_rootfs(cache_dir() / "debian", "bookworm", platform("amd64"), True,
                        io.StringIO())
    with tarfile.open(made.tarball) as archive:
        status = archive.extractfile("./var/lib/dpkg/status").read().decode()
        links = {m.name: m.linkname for m in archive.getmembers() if m.issym()}
    installed = {p.name for p in dpkg_packages(status)}
    assert "usr-is-merged" in installed
    assert not {"usrmerge", "perl", "libperl5.36"} & installed, sorted(installed)
    assert "perl-base" in installed
    assert links.get("./bin") == "usr/bin" and links.get("./lib") == "usr/lib"
