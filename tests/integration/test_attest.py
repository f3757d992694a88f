"""Attestations and signatures end to end: a family with a Debian variant and a busybox one,
committed in a git checkout, released with --attest and --sign-key to the test bed's registry,
read back by independent tools (oras, crane, cosign), its SBOM checked against the image's own
dpkg and its indexes' annotations against the checkout and the provenance, then released again
(nothing written), verified, and verified again after one index is replaced. The signatures
are the tool's own, in cosign's format, from a key `cosign generate-key-pair` made: cosign
verifying them is what proves the format. Last, a busybox release signed and verified on the
bed's TLS registry with Basic auth, the signing and cosign given only what the tool has: the
CI pair and the bed's CA.
And a registry failing the attestation manifests' PUTs, behind the fault proxy: retried, or
nothing published.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.attest.image import WINDOWS_NO_SBOM
from builder.attest.provenance import SLSA_PREDICATE
from builder.attest.sbom import SPDX_PREDICATE
from builder.farm import attestations as farm_attestations
from builder.model import versions
from builder.model.builders import Builders, Engine
from builder.model.platforms import PLATFORMS
from builder.model.reference import OCI_INDEX, ImageRef
from builder.model.report import Status
from builder.plan.identity import Prepared
from builder.plan.plan import plan as make_plan
from builder.publish.rules import Verified
from builder.publish.writer import publish
from builder.registry.client import RegistryClient
from builder.summary.fetch import fetch
from builder.summary.page import render
from tests.helpers.builders import write_builders
from tests.helpers.cli import generate, invoke
from tests.helpers.families import tiny_family
from tests.helpers.git import git
from tests.helpers.paths import ROOT
from tests.helpers.registries import credentials_env
from tests.helpers.windows_images import push_image
from testbed.engine import remove_tags_of
from testbed.registry import start_registry

REPOSITORY = "attest-hello"
GIT_REPO = "https://github.com/example/attest-hello.git"
IMAGE_URL = "https://hub.example.org/_/attest-hello"
VERSIONS = f"""\
repository: {REPOSITORY}
git-repo: {GIT_REPO}
image-url: {IMAGE_URL}
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
    # The family in a directory of a git checkout, committed as a project commits it.
    family = work / "images"
    shutil.copytree(ROOT / "examples" / "hello" / "templates", family / "templates")
    (family / "versions.yaml").write_text(VERSIONS)
    generate(family / "versions.yaml")
    git(work, "init", "-q")
    git(work, "add", "images")
    git(work, "commit", "-q", "-m", "the family")
    builders = write_builders(work / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock",
                               ("amd64", "arm64v8")))
    tool("cosign", "generate-key-pair", "--output-key-prefix", str(work / "cosign"),
         env={"COSIGN_PASSWORD": PASSWORD})
    env = {"COSIGN_PASSWORD": PASSWORD}

    def release() -> subprocess.CompletedProcess:
        return invoke("release", "--version", "1.0.0", "--registry", registry.host,
                      "--versions", str(family / "versions.yaml"), "--builders", str(builders),
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
    return _index_of(registry, REPOSITORY, tag)


def _index_of(registry, repository: str, tag: str) -> dict:
    return json.loads(tool("oras", "manifest", "fetch", "--plain-http",
                           f"{registry.host}/{repository}:{tag}"))


def _statements(registry, entry: dict) -> dict[str, dict]:
    return _statements_of(registry, REPOSITORY, entry)


def _statements_of(registry, repository: str, entry: dict) -> dict[str, dict]:
    """{predicate type: statement} of an attestation manifest, read with crane."""
    name = f"{registry.host}/{repository}"
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


def test_the_index_and_its_image_entries_carry_the_annotations_upstream_writes(released,
                                                                               registry):
    work = released[0]
    commit = git(work, "rev-parse", "HEAD")
    name = f"{registry.host}/{REPOSITORY}"
    for tag, directory in (("1.0.0", "images/1.0/busybox"), ("1.0.0-trixie", "images/1.0/trixie")):
        index = _index(registry, tag)
        attestations = {e["annotations"]["vnd.docker.reference.digest"]: e
                        for e in index["manifests"] if e["platform"]["os"] == "unknown"}
        images = [e for e in index["manifests"] if e["platform"]["os"] != "unknown"]
        source = f"{GIT_REPO}#{commit}:{directory}"
        created = []
        for image in images:
            config = json.loads(tool("crane", "config", "--insecure", f"{name}@{image['digest']}"))
            created.append(config["created"])
            provenance = _statements(registry, attestations[image["digest"]])[SLSA_PREDICATE]
            base, = [d for d in provenance["predicate"]["buildDefinition"]
                     ["resolvedDependencies"] if "@sha256:" in d["uri"]]
            assert image["annotations"] == {
                "org.opencontainers.image.base.digest": "sha256:" + base["digest"]["sha256"],
                "org.opencontainers.image.base.name":
                    "busybox:latest" if "busybox" in directory else "debian:trixie",
                "org.opencontainers.image.created": config["created"],
                "org.opencontainers.image.revision": commit,
                "org.opencontainers.image.source": source,
                "org.opencontainers.image.url": IMAGE_URL,
                "org.opencontainers.image.version": "1.0.0"}, tag
        # Each platform's base is its own manifest of the base image.
        assert len({e["annotations"]["org.opencontainers.image.base.digest"]
                    for e in images}) == len(images)
        assert index["annotations"] == {
            "org.opencontainers.image.created": max(created),
            "org.opencontainers.image.revision": commit,
            "org.opencontainers.image.source": source,
            "org.opencontainers.image.url": IMAGE_URL,
            "org.opencontainers.image.version": "1.0.0"}, tag
        # The attestation entries carry what BuildKit writes on them, no more.
        assert all(set(e["annotations"]) == {"vnd.docker.reference.digest",
                                             "vnd.docker.reference.type"}
                   for e in attestations.values())


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


def test_a_password_that_does_not_open_the_key_stops_the_release_with_nothing_built(
        released, registry):
    """The key is opened while the release plans and probes: a wrong password stops it once
    the engines are probed, before any job takes a slot, naming the key and the option."""
    work = released[0]
    done = invoke("release", "--version", "1.0.0", "--registry", registry.host,
                  "--versions", str(work / "images" / "versions.yaml"),
                  "--builders", str(work / "builders.yaml"), "--attest", "--force",
                  "--sign-key", str(work / "cosign.key"), "--out", str(work / "out-wrong"),
                  "--report", str(work / "wrong.json"), "--logs", str(work / "logs-wrong"),
                  env={"COSIGN_PASSWORD": "not-" + PASSWORD})
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{work / 'cosign.key'}: --sign-key: COSIGN_PASSWORD does not open it" in done.stderr
    report = json.loads((work / "wrong.json").read_text())
    assert report["jobs"] == [] and report["stages"]["build"]["status"] == "failed"
    assert not (work / "logs-wrong").exists()  # no job started: none wrote its log


def test_the_summary_page_lists_the_attestation_manifests_as_repo_info_does(released, registry):
    work = released[0]
    page = (work / "out" / REPOSITORY / "remote" / "1.0.0-trixie.md").read_text()
    platforms = page.split("-\tPlatforms:\n", 1)[1].split("\n\n", 1)[0]
    assert platforms == "\t-\tlinux; amd64\n\t-\tunknown; unknown"
    heading = f"### `{registry.host}/{REPOSITORY}:1.0.0-trixie` - unknown; unknown"
    section = page.split(heading, 1)[1]
    assert "-\tManifest MIME: `application/vnd.oci.image.manifest.v1+json`" in section
    assert section.count("MIME: application/vnd.in-toto+json") == 2


SIGNED_REPOSITORY = "attest-tls"
SIGNED = f"""\
repository: {SIGNED_REPOSITORY}
defaults:
  debian-suite: busybox
variants:
  busybox: {{template: hello, from: "busybox:latest", platforms: [amd64]}}
versions:
  - version: 1.0.0
    variants: [busybox]
"""


def test_a_release_is_signed_and_verified_on_a_tls_registry_with_basic_auth(tmp_path,
                                                                           tls_registry,
                                                                           mirror):
    """The signing and cosign get what the tool has, and nothing they could find alone: the
    Docker config is an empty directory, the credentials are the CI pair (the host-scoped pair
    for verify, which has no --registry), and TLS is verified, with the bed's CA from Docker's
    certs.d for the release and from --ca-bundle for verify."""
    shutil.copytree(ROOT / "examples" / "hello" / "templates", tmp_path / "templates")
    (tmp_path / "versions.yaml").write_text(SIGNED)
    generate(tmp_path / "versions.yaml")
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64",)))
    tool("cosign", "generate-key-pair", "--output-key-prefix", str(tmp_path / "cosign"),
         env={"COSIGN_PASSWORD": PASSWORD})
    (tmp_path / "docker").mkdir()
    alone = {"COSIGN_PASSWORD": PASSWORD, "DOCKER_CONFIG": str(tmp_path / "docker")}
    done = invoke("release", "--version", "1.0.0", "--registry", tls_registry.host,
                  "--versions", str(tmp_path / "versions.yaml"), "--builders", str(builders),
                  "--attest", "--sign-key", str(tmp_path / "cosign.key"),
                  "--out", str(tmp_path / "out"), "--report", str(tmp_path / "report.json"),
                  "--logs", str(tmp_path / "logs"),
                  env={**alone, "BUILDER_REGISTRY_USERNAME": tls_registry.username,
                       "BUILDER_REGISTRY_PASSWORD": tls_registry.password})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    signed = re.search(r"signed (\d+) of (\d+) digests", done.stdout)
    # The index (every tag lists the same image), the image and its attestation manifest.
    assert signed and signed.group(1) == signed.group(2) == "3", done.stdout
    tag = f"{tls_registry.host}/{SIGNED_REPOSITORY}:1.0.0"
    checked = invoke("verify", tag, "--key", str(tmp_path / "cosign.pub"),
                     "--ca-bundle", str(tls_registry.ca_bundle),
                     env={**alone, **credentials_env(tls_registry)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{tag}: verified" in checked.stdout
    everything = done.stdout + done.stderr + checked.stdout + checked.stderr + \
        (tmp_path / "report.json").read_text()
    assert tls_registry.password not in everything
    # cosign's own reader agrees, over verified TLS, logged in through a Docker config.
    (tmp_path / "login").mkdir()
    pair = base64.b64encode(f"{tls_registry.username}:{tls_registry.password}".encode()).decode()
    (tmp_path / "login" / "config.json").write_text(
        json.dumps({"auths": {tls_registry.host: {"auth": pair}}}))
    tool("cosign", "verify", "--key", str(tmp_path / "cosign.pub"),
         "--insecure-ignore-tlog=true", "--offline",
         "--registry-cacert", str(tls_registry.ca_bundle), tag,
         env={"DOCKER_CONFIG": str(tmp_path / "login")})


def test_a_windows_images_attestation_holds_the_provenance_alone_and_its_page_says_why(
        tmp_path, registry):
    """No Windows engine runs here: a hand-made Windows-shaped image (tests/helpers/
    windows_images.py) stands in for the one a Windows engine would push, and a stand-in for
    that engine's version answer gives the provenance its engine. The attestation is then made
    and pushed as the build stage makes it for a Windows job (no inventory), the tag published
    with it, and its summary page read from the registry."""
    family = versions.load(tiny_family(tmp_path / "tiny", "attest-windows"))
    version = family.version("1.0.0")
    builders = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),))
    job = next(j for j in make_plan(family, version, builders=builders,
                                    registry=registry.host).members if j.platform.os == "windows")
    client = RegistryClient(registry.host)
    image = push_image(client, job.image.repository, job.image.tag, job.platform,
                       label=version.full, foreign_layer=False, build_hash="sha256:" + "0" * 64)

    class WindowsEngine:  # what a Windows engine's /version says
        def version(self):
            return {"Version": "24.0.7", "Arch": "amd64", "Os": "windows"}

    build = farm_attestations.facts(
        WindowsEngine(), job, Prepared(job.dockerfile_text, b"", "sha256:" + "0" * 64, ()),
        started=1_700_000_000.0, finished=1_700_000_100.0, engine="windows", emulated=False)
    descriptor = farm_attestations.attest(client, job, image.digest, build, None)
    tag = job.tags[0]
    [result] = publish(client, registry.host, family.repository, version, {tag: [job.variant]},
                       hash_now=lambda key, parent: "", attestations={image.digest: descriptor},
                       verified={job.key: Verified(image.digest, "sha256:" + "0" * 64)})
    assert result.status is Status.WRITTEN, result.reason

    index = _index_of(registry, family.repository, tag)
    attestation, = [e for e in index["manifests"] if e["platform"]["os"] == "unknown"]
    assert set(_statements_of(registry, family.repository, attestation)) == {SLSA_PREDICATE}
    page = render(fetch(ImageRef.parse(f"{registry.host}/{family.repository}:{tag}"), client))
    windows_section, attestation_section = page.split("\n### ")[1:]
    assert "SBOM" not in windows_section
    assert f"-\tNo SBOM: {WINDOWS_NO_SBOM}; this attestation manifest holds the provenance " \
           "alone\n" in attestation_section


@pytest.mark.parametrize("status, faults", [("503", 2), ("507", 1000)])
def test_an_attestation_manifest_the_registry_fails_is_retried_or_publishes_nothing(
        status, faults, released, fault_proxy, docker_client, tmp_path):
    """The attestation manifests' PUTs (by digest: no image, signature or tag is put so)
    answered `status`, behind the fault proxy, to a registry of this test alone: a 503 twice is
    retried and the release is whole; a 507 every time fails every job with one line, and no tag
    is published, so no index lists an image without its attestations."""
    work = released[0]
    registry = start_registry(tmp_path / "registry", name=f"attest-faults-{status}")
    proxy = fault_proxy(registry, rate="1", kinds=status, max_faults=faults,
                        match=rf"^PUT /v2/{REPOSITORY}/manifests/sha256:")
    try:
        done = invoke("release", "--version", "1.0.0", "--registry", proxy.host,
                      "--versions", str(work / "images" / "versions.yaml"),
                      "--builders", str(work / "builders.yaml"), "--attest",
                      "--sign-key", str(work / "cosign.key"), "--out", str(tmp_path / "out"),
                      "--report", str(tmp_path / "report.json"), "--logs", str(tmp_path / "logs"),
                      env={"COSIGN_PASSWORD": PASSWORD})
        # a 507 marks the registry: the manifests after it are not even sent
        assert 1 <= len(proxy.faults()) <= (2 if status == "503" else 3)
        assert "Traceback" not in done.stderr
        if status == "503":
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert len(proxy.faults()) == 2
            index = _index_of(registry, REPOSITORY, "1.0.0")
            assert sum(e["platform"]["os"] == "unknown" for e in index["manifests"]) == 2
            assert invoke("verify", f"{registry.host}/{REPOSITORY}:1.0.0", "--key",
                          str(work / "cosign.pub")).returncode == 0
        else:
            assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
            assert done.stderr.count(f"registry {proxy.host} refuses writes:") == 1, done.stderr
            jobs = json.loads((tmp_path / "report.json").read_text())["jobs"]
            assert len(jobs) == 3 and {job["status"] for job in jobs} == {"failed"}, jobs
            client = RegistryClient(registry.host)
            assert [tag for tag in ("latest", "1.0.0", "1.0.0-trixie", "trixie")
                    if client.head_manifest(REPOSITORY, tag)] == []
    finally:
        remove_tags_of(docker_client, proxy.host)
        registry.stop()
