"""Attestations and signatures end to end: a family with a Debian variant and a busybox one
released with --attest and --sign-key to the test bed's registry, read back by independent
tools (oras, crane, cosign), its SBOM checked against the image's own dpkg, then released again
(nothing written), verified, and verified again after one index is replaced.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.attest.provenance import SLSA_PREDICATE
from builder.attest.sbom import SPDX_PREDICATE
from builder.model.reference import OCI_INDEX
from tests.helpers.builders import write_builders
from tests.helpers.cli import generate, invoke
from tests.helpers.paths import ROOT

REPOSITORY = "attest-hello"
VERSIONS = f"""\
repository: {REPOSITORY}
defaults:
  debian-suite: busybox
variants:
  busybox: {{template: hello, from: "busybox:latest", platforms: [amd64, arm64v8]}}
  trixie: {{template: hello, directory: trixie, from: "debian:trixie", platforms: [amd64]}}
versions:
  - version: 1.0.0
    aliases: [latest]
    variants: [busybox, trixie]
"""
PASSWORD = "attest-test-password"
TOOLS = ("cosign", "oras", "crane")


def tool(*args: str, env: dict | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def storage_state(storage: Path) -> dict[str, tuple]:
    return {str(p.relative_to(storage)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(storage.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def released(tmp_path_factory, registry, mirror):
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"test bed: {', '.join(missing)} missing: run scripts/setup", pytrace=False)
    work = tmp_path_factory.mktemp("attest")
    shutil.copytree(ROOT / "examples" / "hello" / "templates", work / "templates")
    (work / "versions.yaml").write_text(VERSIONS)
    generate(work / "versions.yaml")
    builders = write_builders(work / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock",
                               ("amd64", "arm64v8")))
    tool("cosign", "generate-key-pair", "--output-key-prefix", str(work / "cosign"),
         env={"COSIGN_PASSWORD": PASSWORD})
    env = {"COSIGN_PASSWORD": PASSWORD}

    def release() -> subprocess.CompletedProcess:
        return invoke("release", "--version", "1.0.0", "--registry", registry.host,
                      "--versions", str(work / "versions.yaml"), "--builders", str(builders),
                      "--attest", "--sign-key", str(work / "cosign.key"),
                      "--out", str(work / "out"), "--report", str(work / "report.json"),
                      "--logs", str(work / "logs"), env=env)

    first = release()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-3000:]
    report = json.loads((work / "report.json").read_text())
    before = storage_state(registry.storage)
    second = release()
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-3000:]
    return work, report, before, storage_state(registry.storage), second


def _index(registry, tag: str) -> dict:
    return json.loads(tool("oras", "manifest", "fetch", "--plain-http",
                           f"{registry.host}/{REPOSITORY}:{tag}"))


def _statements(registry, entry: dict) -> dict[str, dict]:
    """{predicate type: statement} of an attestation manifest, read with crane."""
    name = f"{registry.host}/{REPOSITORY}"
    manifest = json.loads(tool("crane", "manifest", "--insecure", f"{name}@{entry['digest']}"))
    return {layer["annotations"]["in-toto.io/predicate-type"]:
            json.loads(tool("crane", "blob", "--insecure", f"{name}@{layer['digest']}"))
            for layer in manifest["layers"]}


def test_each_tag_is_an_oci_index_of_its_images_and_their_attestation_manifests(released,
                                                                              registry):
    index = _index(registry, "1.0.0")
    assert index["mediaType"] == OCI_INDEX
    images = [e for e in index["manifests"] if e["platform"]["os"] != "unknown"]
    attestations = [e for e in index["manifests"] if e["platform"]["os"] == "unknown"]
    assert [e["platform"]["architecture"] for e in images] == ["amd64", "arm64"]
    assert len(attestations) == 2
    assert {e["annotations"]["vnd.docker.reference.digest"] for e in attestations} \
        == {e["digest"] for e in images}
    assert {e["annotations"]["vnd.docker.reference.type"] for e in attestations} \
        == {"attestation-manifest"}
    assert index["annotations"]["org.opencontainers.image.version"] == "1.0.0"
    assert all(e["annotations"]["org.opencontainers.image.version"] == "1.0.0" for e in images)
    for entry in attestations:
        found = _statements(registry, entry)
        assert set(found) == {SPDX_PREDICATE, SLSA_PREDICATE}
        for statement in found.values():
            assert statement["subject"][0]["digest"]["sha256"] \
                == entry["annotations"]["vnd.docker.reference.digest"].split(":")[1]


def test_the_sbom_lists_exactly_what_dpkg_knows_in_the_image(released, registry, docker_client):
    index = _index(registry, "1.0.0-trixie")
    image, = [e for e in index["manifests"] if e["platform"]["os"] != "unknown"]
    attestation, = [e for e in index["manifests"] if e["platform"]["os"] == "unknown"]
    sbom = _statements(registry, attestation)[SPDX_PREDICATE]["predicate"]
    assert sbom["spdxVersion"] == "SPDX-2.3"
    reference = f"{registry.host}/{REPOSITORY}@{image['digest']}"
    listed = docker_client.containers.run(reference, ["dpkg-query", "-W"], remove=True,
                                          entrypoint=[]).decode()
    dpkg = {tuple(line.split("\t")) for line in listed.splitlines()}
    assert len(dpkg) > 50
    found = {(p["name"], p["versionInfo"]) for p in sbom["packages"]
             if p["SPDXID"].startswith("SPDXRef-dpkg-")}
    assert found == {(name.split(":")[0], version) for name, version in dpkg}
    purls = [r["referenceLocator"] for p in sbom["packages"] for r in p.get("externalRefs", [])]
    assert any(p.startswith("pkg:deb/debian/libc6@") and "distro=debian-trixie" in p
               for p in purls)


def test_the_provenance_names_the_base_by_digest_and_the_dockerfile(released, registry,
                                                                   mirror):
    work, report, *_ = released
    job = next(j for j in report["jobs"] if j["job"] == "1.0.0/trixie/amd64")
    index = _index(registry, "1.0.0-trixie")
    attestation, = [e for e in index["manifests"] if e["platform"]["os"] == "unknown"]
    predicate = _statements(registry, attestation)[SLSA_PREDICATE]["predicate"]
    definition = predicate["buildDefinition"]
    assert definition["externalParameters"]["buildHash"] == job["build_hash"]
    base, = definition["resolvedDependencies"]
    assert base["uri"].startswith(f"{mirror.host}/library/debian@sha256:")
    assert base["digest"]["sha256"] == base["uri"].rsplit(":", 1)[1]
    assert definition["internalParameters"]["engine"]["name"] == "local"
    assert definition["internalParameters"]["emulated"] is False


def test_a_no_op_release_writes_nothing_and_signs_nothing(released):
    _, _, before, after, second = released
    assert after == before
    assert "signed 0 of" in second.stdout


def test_verify_passes_then_names_the_index_that_was_replaced(released, registry):
    work = released[0]
    key = str(work / "cosign.pub")
    for tag in ("1.0.0", "latest", "1.0.0-trixie"):
        done = invoke("verify", f"{registry.host}/{REPOSITORY}:{tag}", "--key", key)
        assert done.returncode == 0, done.stdout + done.stderr
    # cosign's own reader agrees, offline.
    tool("cosign", "verify", "--key", key, "--insecure-ignore-tlog=true", "--offline",
         "--allow-http-registry", "--allow-insecure-registry",
         f"{registry.host}/{REPOSITORY}:1.0.0-trixie")
    # Replace one tag's index with the same images, annotated otherwise: unsigned bytes.
    index = _index(registry, "latest")
    index["annotations"]["org.opencontainers.image.version"] = "9.9.9"
    path = work / "tampered.json"
    path.write_text(json.dumps(index))
    tool("oras", "manifest", "push", "--plain-http", "--media-type", OCI_INDEX,
         f"{registry.host}/{REPOSITORY}:latest", str(path))
    done = invoke("verify", f"{registry.host}/{REPOSITORY}:latest", "--key", key)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{registry.host}/{REPOSITORY}:latest: the index sha256:" in done.stderr
    assert "is not signed" in done.stderr
    assert invoke("verify", f"{registry.host}/{REPOSITORY}:1.0.0",
                  "--key", key).returncode == 0


def test_the_summary_page_lists_the_attestation_manifests_as_repo_info_does(released, registry):
    work = released[0]
    page = (work / "out" / REPOSITORY / "remote" / "1.0.0-trixie.md").read_text()
    platforms = page.split("-\tPlatforms:\n", 1)[1].split("\n\n", 1)[0]
    assert platforms == "\t-\tlinux; amd64\n\t-\tunknown; unknown"
    heading = f"### `{registry.host}/{REPOSITORY}:1.0.0-trixie` - unknown; unknown"
    section = page.split(heading, 1)[1]
    assert "-\tManifest MIME: `application/vnd.oci.image.manifest.v1+json`" in section
    assert section.count("MIME: application/vnd.in-toto+json") == 2
