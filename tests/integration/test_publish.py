"""The publish stage against real registries (Distribution 2.8 from the test bed).

The list tests use hand-made per-arch images (a config and one tiny layer, PUT straight to
the registry): publish only reads manifests and configs, so they need no engine. Each carries
the build hash `PLANNED`, and the plan these tests hand `publish` builds that hash for every
member (`builder.publish.rules` and tests/test_publish_rules.py test that rule against real
plans). The Windows images stand in for a Windows engine, which cannot run here: config
os=windows with an os.version, and a foreign layer that points at mcr.microsoft.com like the
real base layers do. The `invoke publish` tests publish images the local engine built.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from builder.model.errors import BuilderError
from builder.model.platforms import PLATFORMS
from builder.model.naming import arch_reference
from builder.publish.writer import publish
from builder.publish.lists import Member, assemble, platform_fields
from builder.model.reference import (DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, ImageRef,
                                     Manifest, sha256_digest)
from builder.registry.client import RegistryClient
from builder.model.report import Status
from builder.summary.fetch import summarize
from builder.model.tags import tag_groups
from builder.model import versions as versions_module
from builder.model.versions import Variant
from tests.helpers.builders import write_builders
from testbed.registry import start_registry
from tests.helpers.windows_images import push_image
from tests.helpers.cli import invoke
from tests.helpers.tinypy import (BUSTER, PLANNED, WIN1809, WIN2016, make_family, make_version,
                                  planned, push_release)

@pytest.fixture(scope="module")
def windows_registry(tmp_path_factory):
    """A registry of this module's own, so its tag checks see no other test's images.

    It accepts foreign layers (Windows base layers on mcr.microsoft.com) like every registry
    of the test bed: Distribution 2.8 refuses them unless validation.manifests.urls.allow is set.
    """
    registry = start_registry(tmp_path_factory.mktemp("windows-registry"), name="windows-registry")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def client(windows_registry) -> RegistryClient:
    return RegistryClient(windows_registry.host)


def entry_summary(document: dict) -> list[tuple]:
    return [(m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"),
             m["platform"].get("os.version")) for m in document["manifests"]]


EXPECTED_ORDER = [("linux", "amd64", None, None), ("linux", "arm", "v7", None),
                  ("linux", "arm64", "v8", None), ("linux", "386", None, None),
                  ("windows", "amd64", None, "10.0.14393.3274"),
                  ("windows", "amd64", None, "10.0.17763.805")]


# --- the pure core ---------------------------------------------------------------------------

def test_platform_fields_normalize_through_the_table():
    assert platform_fields({"os": "linux", "architecture": "arm64"}) == \
        {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert platform_fields({"os": "linux", "architecture": "arm"})["variant"] == "v7"
    assert platform_fields({"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.805",
                            "os.features": ["win32k"]}) == \
        {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.805",
         "os.features": ["win32k"]}
    with pytest.raises(BuilderError, match="linux/sparc"):
        platform_fields({"os": "linux", "architecture": "sparc"})


def _member(os_: str, arch: str, variant: str | None = None, os_version: str | None = None) -> Member:
    body = json.dumps({"x": [os_, arch, variant, os_version]}).encode()
    config = {"os": os_, "architecture": arch}
    if variant:
        config["variant"] = variant
    if os_version:
        config["os.version"] = os_version
    return Member(Manifest(DOCKER_MANIFEST, sha256_digest(body), body), config)


def test_assemble_orders_by_the_platform_table_then_windows_version():
    members = [_member("windows", "amd64", os_version="10.0.17763.805"),
               _member("linux", "s390x"), _member("linux", "arm", "v5"),
               _member("windows", "amd64", os_version="10.0.14393.3274"),
               _member("linux", "386"), _member("linux", "arm64"), _member("linux", "amd64"),
               _member("linux", "ppc64le"), _member("linux", "arm", "v7"), _member("linux", "arm", "v6")]
    body, media_type = assemble(members)
    document = json.loads(body)
    assert media_type == DOCKER_LIST == document["mediaType"]
    assert [(p[1], p[2] or p[3]) for p in entry_summary(document)] == [
        ("amd64", None), ("arm", "v5"), ("arm", "v6"), ("arm", "v7"), ("arm64", "v8"),
        ("386", None), ("ppc64le", None), ("s390x", None),
        ("amd64", "10.0.14393.3274"), ("amd64", "10.0.17763.805")]
    child = members[1].manifest
    entry = next(m for m in document["manifests"] if m["digest"] == child.digest)
    assert entry["size"] == len(child.body) and entry["mediaType"] == DOCKER_MANIFEST
    assert assemble(list(reversed(members))) == (body, media_type)
    oci_body, oci_type = assemble(members, oci=True)
    assert oci_type == OCI_INDEX == json.loads(oci_body)["mediaType"]


def test_assemble_refuses_two_images_for_one_platform():
    with pytest.raises(BuilderError, match="two images claim linux/amd64"):
        assemble([_member("linux", "amd64"), _member("linux", "x86_64")])


# --- against the registry --------------------------------------------------------------------

def test_publish_writes_every_tag_in_order_and_docker_agrees(client, windows_registry, tmp_path):
    host = windows_registry.host
    version = make_version("1.0.0")
    pushed = push_release(client, host, version)
    groups = tag_groups(make_family(version), version)
    assert set(groups) >= {"1.0.0", "1.0.0-buster", "1", "1-buster", "1.0.0-windowsservercore"}

    results = publish(client, host, "tinypy", version, groups, hash_now=planned)

    assert [r.tag for r in results] == list(groups)
    assert {r.status for r in results} == {Status.WRITTEN}
    shared = client.get_manifest("tinypy", "1.0.0")
    assert shared.media_type == DOCKER_LIST and shared.digest == results[list(groups).index("1.0.0")].digest
    assert entry_summary(shared.json) == EXPECTED_ORDER
    expected_digests = [pushed[k].digest for k in (
        ("buster", "amd64"), ("buster", "arm32v7"), ("buster", "arm64v8"), ("buster", "i386"),
        ("windowsservercore-ltsc2016", "windows-amd64"), ("windowsservercore-1809", "windows-amd64"))]
    assert [m["digest"] for m in shared.json["manifests"]] == expected_digests
    assert all(m["size"] == len(pushed_body) for m, pushed_body in zip(
        shared.json["manifests"], (client.get_manifest("tinypy", d).body for d in expected_digests)))
    only_buster = client.get_manifest("tinypy", "1.0.0-buster").json
    assert entry_summary(only_buster) == EXPECTED_ORDER[:4]
    windows = client.get_manifest("tinypy", "1.0.0-windowsservercore").json
    assert entry_summary(windows) == EXPECTED_ORDER[4:]

    inspected = subprocess.run(["docker", "manifest", "inspect", "--insecure", f"{host}/tinypy:1.0.0"],
                               capture_output=True, text=True, check=True,
                               env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    cli = json.loads(inspected.stdout)
    assert cli["mediaType"] == DOCKER_LIST
    assert [m["digest"] for m in cli["manifests"]] == expected_digests
    assert entry_summary(cli) == EXPECTED_ORDER


def test_rerun_writes_nothing(client, windows_registry):
    host = windows_registry.host
    version = make_version("1.1.0")
    push_release(client, host, version)
    groups = tag_groups(make_family(version), version)
    first = publish(client, host, "tinypy", version, groups, hash_now=planned)
    before = {r.tag: client.head_manifest("tinypy", r.tag).digest for r in first}

    again = publish(client, host, "tinypy", version, groups, hash_now=planned)

    assert {r.status for r in again} == {Status.UNCHANGED}
    assert [r.digest for r in again] == [r.digest for r in first]
    assert {r.tag: client.head_manifest("tinypy", r.tag).digest for r in again} == before


def test_missing_platform_leaves_the_tag_untouched(client, windows_registry):
    host = windows_registry.host
    version = make_version("1.2.0")
    push_release(client, host, version, label="old")
    groups = tag_groups(make_family(version), version)
    publish(client, host, "tinypy", version, groups, hash_now=planned)
    before = client.head_manifest("tinypy", "1.2.0").digest
    # A new build of the same version where arm64v8 failed to push:
    push_release(client, host, version, skip=(("buster", "arm64v8"),), label="new")
    requests.delete(f"{windows_registry.url}/v2/tinypy/manifests/"
                    f"{client.head_manifest('tinypy', '1.2.0-buster-arm64v8').digest}", timeout=10)

    results = {r.tag: r for r in publish(client, host, "tinypy", version, groups,
                                         hash_now=planned)}

    assert results["1.2.0"].status is Status.FAILED
    assert "1.2.0-buster-arm64v8" in results["1.2.0"].reason
    assert results["1.2.0"].missing == (f"{host}/tinypy:1.2.0-buster-arm64v8",)
    assert client.head_manifest("tinypy", "1.2.0").digest == before
    # Tags that do not need arm64v8 are published from the new images.
    assert results["1.2.0-windowsservercore"].status is Status.WRITTEN

    partial = {r.tag: r for r in publish(client, host, "tinypy", version, groups,
                                         allow_missing=True, hash_now=planned)}
    assert partial["1.2.0"].status is Status.WRITTEN
    assert "PARTIAL" in partial["1.2.0"].line()
    assert ("linux", "arm64", "v8", None) not in entry_summary(client.get_manifest("tinypy", "1.2.0").json)


def test_allow_lagging_keeps_a_platforms_current_member_and_never_goes_back(
        client, windows_registry):
    """1.6.0 is published; 1.7.0 lacks arm64v8 (its job failed). With --allow-lagging the
    shared tags (1, 1-buster) keep 1.6.0's arm64v8 member, say so, and the pages name it; the
    tags of 1.7.0 alone have no such member and stay missing. Publishing 1.6.0 again then
    refuses those shared tags: they would go back."""
    host = windows_registry.host
    old, new = make_version("1.6.0", BUSTER), make_version("1.7.0", BUSTER)
    push_release(client, host, old, versioned=True)
    publish(client, host, "tinypy", old, tag_groups(make_family(old), old), hash_now=planned)
    kept = client.get_manifest("tinypy", "1.6.0-buster-arm64v8").digest
    push_release(client, host, new, skip=(("buster", "arm64v8"),), versioned=True)
    groups = tag_groups(make_family(new), new)

    strict = {r.tag: r for r in publish(client, host, "tinypy", new, groups, hash_now=planned)}
    lagging = {r.tag: r for r in publish(client, host, "tinypy", new, groups, hash_now=planned,
                                         allow_lagging=True)}

    assert strict["1"].status is Status.FAILED and strict["1"].missing
    assert lagging["1"].status is Status.WRITTEN and lagging["1"].missing == ()
    assert lagging["1"].lagging == ("linux/arm64/v8 at 1.6.0",)
    assert "LAGGING linux/arm64/v8 at 1.6.0" in lagging["1"].line()
    listed = {m["platform"]["architecture"]: m["digest"]
              for m in client.get_manifest("tinypy", "1").json["manifests"]}
    assert listed["arm64"] == kept
    assert listed["amd64"] == client.get_manifest("tinypy", "1.7.0-buster-amd64").digest
    assert lagging["1.7.0"].status is Status.FAILED  # a new tag: nothing to lag onto
    page = summarize(client, ImageRef.parse(f"{host}/tinypy:1-buster"))
    assert "-\tLagging: `1.6.0`; the tag's newest members are `1.7.0`" in page

    back = {r.tag: r for r in publish(client, host, "tinypy", old,
                                      tag_groups(make_family(old), old), hash_now=planned,
                                      allow_lagging=True)}
    assert back["1"].status is Status.FAILED and "newer than this run's 1.6.0" in back["1"].reason
    assert back["1.6.0"].status is Status.UNCHANGED
    assert client.get_manifest("tinypy", "1").digest == lagging["1"].digest


def test_a_member_built_from_another_variant_is_current_only_with_its_parent(
        client, windows_registry):
    """SLIM builds FROM BUSTER: a tag of SLIM alone reads BUSTER's image too, and hashes SLIM
    from BUSTER's digest; when BUSTER is stale, so is SLIM."""
    host = windows_registry.host
    slim = Variant("slim-buster", "buster/slim", "debian", "tinypy:buster", BUSTER.platforms)
    version = make_version("1.5.0", BUSTER, slim)
    pushed = push_release(client, host, version)
    groups = {tag: variants for tag, variants in tag_groups(make_family(version), version).items()
              if variants == (slim,)}
    assert groups and "1.5.0-slim-buster" in groups
    child = {f"1.5.0/slim-buster/{p.name}": f"1.5.0/buster/{p.name}" for p in BUSTER.platforms}
    asked = []

    def hash_now(key: str, parent: str | None) -> str:
        asked.append((key, parent))
        stale_parent = key.startswith("1.5.0/buster/") and key.endswith("/arm64v8")
        return "sha256:" + "d" * 64 if stale_parent else PLANNED

    results = {r.tag: r for r in publish(client, host, "tinypy", version, groups,
                                         hash_now=hash_now, parents=child)}

    for key in child:
        platform = key.rsplit("/", 1)[1]
        if platform != "arm64v8":  # hashed from the parent's digest, read from the registry
            assert (key, pushed[("buster", platform)].digest) in asked
    assert {r.status for r in results.values()} == {Status.FAILED}
    stale_child = f"{host}/tinypy:1.5.0-slim-buster-arm64v8"
    assert {r.stale for r in results.values()} == {(stale_child,)}
    reason = results["1.5.0-slim-buster"].reason
    assert f"{stale_child} is stale: it builds FROM {host}/tinypy:1.5.0-buster-arm64v8, " \
           "which is not current" in reason
    assert client.head_manifest("tinypy", "1.5.0-slim-buster") is None

    written = publish(client, host, "tinypy", version, groups, hash_now=planned, parents=child)
    assert {r.status for r in written} == {Status.WRITTEN}
    assert [m["digest"] for m in client.get_manifest("tinypy", "1.5.0-slim-buster")
            .json["manifests"]] == [pushed[("slim-buster", p.name)].digest for p in BUSTER.platforms]


def test_oci_index(client, windows_registry):
    host = windows_registry.host
    version = make_version("1.3.0", BUSTER)
    push_release(client, host, version)
    groups = tag_groups(make_family(version), version)

    results = publish(client, host, "tinypy", version, groups, oci=True, hash_now=planned)

    assert {r.media_type for r in results} == {OCI_INDEX}
    index = client.get_manifest("tinypy", "1.3.0")
    assert index.media_type == OCI_INDEX and index.json["mediaType"] == OCI_INDEX
    assert entry_summary(index.json) == EXPECTED_ORDER[:4]
    assert index.digest == results[0].digest


def test_a_tag_with_an_oci_member_is_an_oci_index_and_the_others_stay_lists(client,
                                                                          windows_registry):
    """A Docker manifest list names Docker v2 manifests only: a tag that holds one OCI manifest
    (the containerd image store pushes those) is written as an OCI index without --oci."""
    host = windows_registry.host
    version = make_version("1.8.0")
    pushed = push_release(client, host, version, oci=(("buster", "arm64v8"),))
    groups = tag_groups(make_family(version), version)

    results = {r.tag: r for r in publish(client, host, "tinypy", version, groups,
                                         hash_now=planned)}

    for tag, variants in groups.items():
        expected = OCI_INDEX if BUSTER in variants else DOCKER_LIST
        served = client.get_manifest("tinypy", tag)
        assert (results[tag].media_type, served.media_type, served.json["mediaType"]) == \
            (expected, expected, expected), tag
        assert served.digest == results[tag].digest
    index = client.get_manifest("tinypy", "1.8.0").json
    assert entry_summary(index) == EXPECTED_ORDER
    assert [m["mediaType"] for m in index["manifests"]] == \
        [DOCKER_MANIFEST, DOCKER_MANIFEST, OCI_MANIFEST] + [DOCKER_MANIFEST] * 3
    assert index["manifests"][2]["digest"] == pushed[("buster", "arm64v8")].digest
    assert "(OCI index: linux/amd64, " in results["1.8.0"].line()
    again = publish(client, host, "tinypy", version, groups, hash_now=planned)
    assert {r.status for r in again} == {Status.UNCHANGED}


def test_arch_namespaces_are_copied_in_by_mount(client, windows_registry):
    host = windows_registry.host
    version = make_version("1.4.0")
    pushed = push_release(client, host, version, arch_namespace_layout=True)
    assert client.head_manifest("amd64/tinypy", "1.4.0-buster")
    assert client.head_manifest("winamd64/tinypy", "1.4.0-windowsservercore-1809")
    assert client.head_manifest("tinypy", pushed[("buster", "amd64")].digest) is None
    groups = tag_groups(make_family(version), version)

    dry = publish(client, host, "tinypy", version, groups, arch_namespace_layout=True,
                  dry_run=True, hash_now=planned)
    assert {r.status for r in dry} == {Status.PLANNED}
    assert client.head_manifest("tinypy", "1.4.0") is None
    assert client.head_manifest("tinypy", pushed[("buster", "amd64")].digest) is None

    results = publish(client, host, "tinypy", version, groups, arch_namespace_layout=True,
                      hash_now=planned)

    assert {r.status for r in results} == {Status.WRITTEN}
    shared = client.get_manifest("tinypy", "1.4.0").json
    assert entry_summary(shared) == EXPECTED_ORDER
    for manifest in pushed.values():
        assert client.get_manifest("tinypy", manifest.digest).body == manifest.body
        config = manifest.json["config"]["digest"]
        assert client.head_blob("tinypy", config).size == manifest.json["config"]["size"]


@pytest.fixture
def tinypy_tree(tmp_path, mirror) -> Path:
    """tinypy 2.0.0: one variant on amd64 and arm32v7, FROM the mirror's busybox, no RUN step
    (nothing runs under QEMU: the builds take a second); builders.yaml beside it."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "debian.Dockerfile.j2").write_text(
        "FROM {{ variant.base_image }}\nENV TINYPY {{ version.full }}\n")
    path = tmp_path / "versions.yaml"
    path.write_text("repository: tinypy\n"
                    "defaults:\n  debian-suite: buster\n"
                    "variants:\n  buster:\n    template: debian\n    from: busybox:latest\n"
                    "    platforms: [amd64, arm32v7]\n"
                    "versions:\n  - version: 2.0.0\n    aliases: [\"2\"]\n    variants: [buster]\n")
    write_builders(tmp_path / "builders.yaml", mirror.host,
                   ("local", "unix:///var/run/docker.sock", ("amd64", "arm32v7")))
    return path


def _build(versions: Path, host: str, *args: str, env: dict | None = None) -> None:
    done = invoke("build", "--version", "2.0.0", "--versions", str(versions), "--push", "--registry", host,
                  "--builders", str(versions.parent / "builders.yaml"),
                  "--logs", str(versions.parent / "logs"), *args, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def test_invoke_publish_exit_codes(registry, tinypy_tree):
    """The command line on the session registry: images the local engine built, published by
    a standalone `invoke publish`, which takes each only at the plan's build hash."""
    versions, host = tinypy_tree, registry.host
    client = RegistryClient(host)
    common = ("--registry", host, "--versions", str(versions),
              "--builders", str(versions.parent / "builders.yaml"))
    _build(versions, host, "--platform", "amd64")

    missing = invoke("publish", "--version", "2.0.0", *common)
    assert missing.returncode == 1, missing.stderr
    assert f"{host}/tinypy:2.0.0-buster-arm32v7" in missing.stdout
    assert client.head_manifest("tinypy", "2.0.0") is None

    _build(versions, host)
    done = invoke("publish", "--version", "2.0.0", *common)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{host}/tinypy:2.0.0: written" in done.stdout
    again = invoke("publish", "--version", "2.0", *common)
    assert again.returncode == 0 and "written" not in again.stdout
    assert again.stdout.count(": unchanged") == len(done.stdout.splitlines())
    listed = client.head_manifest("tinypy", "2").digest

    # Another image at the arm32v7 tag, of no build of this tree: standalone publish refuses it.
    version = versions_module.load(versions).version("2.0.0")
    arm = arch_reference(host, "tinypy", version, version.variants[0], PLATFORMS["arm32v7"])
    push_image(client, arm.repository, arm.tag, PLATFORMS["arm32v7"], label="by hand")
    stale = invoke("publish", "--version", "2.0.0", *common, "--report", str(versions.parent / "r.json"))
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert f"{host}/tinypy:2: failed: {arm} is stale: it has no build hash label" in stale.stdout
    assert client.head_manifest("tinypy", "2").digest == listed
    tags = json.loads((versions.parent / "r.json").read_text())["tags"]
    assert {(t["tag"], t["status"], tuple(t["stale"])) for t in tags} == \
        {(t["tag"], "failed", (str(arm),)) for t in tags}

    bad = invoke("publish", "--version", "9.9.9", *common)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "9.9.9" in bad.stderr


def test_basic_auth_over_tls(tls_registry, tinypy_tree, tmp_path):
    versions = tinypy_tree
    from builder.registry.credentials import Credentials
    creds = Credentials(tls_registry.username, tls_registry.password)
    client = RegistryClient(tls_registry.host, credentials=creds, ca_bundle=str(tls_registry.ca_bundle))
    env = {"BUILDER_REGISTRY_USERNAME": tls_registry.username,
           "BUILDER_REGISTRY_PASSWORD": tls_registry.password,
           "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    _build(versions, tls_registry.host, env=env)
    common = ("--version", "2.0.0", "--registry", tls_registry.host, "--versions", str(versions),
              "--builders", str(versions.parent / "builders.yaml"),
              "--ca-bundle", str(tls_registry.ca_bundle))

    done = invoke("publish", *common, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert entry_summary(client.get_manifest("tinypy", "2").json) == EXPECTED_ORDER[:2]

    wrong = invoke("publish", *common, env={**env, "BUILDER_REGISTRY_PASSWORD": "not-" + tls_registry.password})
    assert wrong.returncode == 1
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1, wrong.stderr
    assert f"registry {tls_registry.host} refused the credentials for user 'builder'" in lines[0]
    assert "BUILDER_REGISTRY_" in lines[0]
    assert tls_registry.password not in wrong.stderr + wrong.stdout
