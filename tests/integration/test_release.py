"""`invoke release` end to end, as a pipeline runs it: a subprocess, the TLS+auth registry, two
engines, the JSON report, then the registry and the summary pages checked against the report.

The tiny family's Windows variant has no engine here: the test pushes a hand-made
Windows-shaped image (tests/helpers/windows_images.py) under the per-arch name the build stage would
use, labelled with the build hash a Windows engine would give it (its base, a Windows-shaped
servercore in the mirror, pinned as a build pins it), standing in for a Windows engine; the
release then skips that job ("no engine") and publishes it with the Linux images, since its
hash is the plan's. The shared test bed's registries refuse foreign-layer urls (Distribution
needs validation.manifests.urls.allow), so that image has no foreign layer.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from builder.commands.publish import hash_now
from builder.farm import engines
from builder.model import versions
from builder.model.naming import arch_reference
from builder.plan.plan import plan as make_plan
from builder.model.platforms import PLATFORMS
from builder.model.reference import DOCKER_LIST
from builder.registry.client import Registries, RegistryClient
from builder.model.tags import tag_groups
from tests.helpers.builders import write_builders
from tests.helpers.cli import release
from tests.helpers.families import tiny_family
from tests.helpers.registries import client_for, read_report
from tests.helpers.windows_images import push_image

REPOSITORY = "tiny-release"
LOCAL = ("amd64", "arm32v5", "arm32v7", "i386")
SECOND = ("arm64v8", "ppc64le", "s390x")
# A Linux variant's list entries, in the platform table's order: (platform, (os, arch, variant, os.version)).
LINUX_ENTRIES = (("amd64", ("linux", "amd64", None, None)), ("arm32v5", ("linux", "arm", "v5", None)),
                 ("arm32v7", ("linux", "arm", "v7", None)), ("arm64v8", ("linux", "arm64", "v8", None)),
                 ("i386", ("linux", "386", None, None)), ("ppc64le", ("linux", "ppc64le", None, None)),
                 ("s390x", ("linux", "s390x", None, None)))
WINDOWS_ENTRY = ("windows-amd64", ("windows", "amd64", None, "10.0.17763.805"))
WINDOWS = "windowsservercore-1809"


def windows_base(mirror) -> str:
    """A Windows-shaped servercore:1809 in the mirror, for the Windows variant to pin."""
    platform = PLATFORMS["windows-amd64"].with_os_version("10.0.17763")
    push_image(RegistryClient(mirror.host), "windows/servercore", "1809", platform,
               label="servercore", foreign_layer=False)
    return f"{mirror.host}/windows/servercore:1809"


def push_windows(client: RegistryClient, host: str, family, version, variant, builders: Path):
    """The per-arch image a Windows engine would have pushed (no foreign layer: see the
    docstring), labelled with the build hash that engine's build would give it."""
    platform = variant.platforms[0]
    ref = arch_reference(host, REPOSITORY, version, variant, platform)
    plan = make_plan(family, version, builders=engines.load(builders), registry=host)
    job = next(j for j in plan.members if j.variant == variant)
    return push_image(client, ref.repository, ref.tag, platform, label=version.full,
                      foreign_layer=False,
                      build_hash=hash_now(plan, Registries(target=host))(job.key, None))


def storage_state(storage: Path) -> dict[str, tuple]:
    """Every file and directory of the registry's storage, with size and modification time."""
    state = {}
    for path in sorted(storage.rglob("*")):
        info = path.stat()
        state[str(path.relative_to(storage))] = ((info.st_size, info.st_mtime_ns) if path.is_file()
                                                 else "dir")
    return state


def registry_state(registry, client: RegistryClient) -> dict[str, dict[str, str]]:
    """{repository: {tag: digest}} from the catalog, as the API serves it."""
    repositories = registry.get("/v2/_catalog?n=1000").json()["repositories"]
    state = {}
    for repository in repositories:
        tags = registry.get(f"/v2/{repository}/tags/list").json().get("tags") or []
        state[repository] = {tag: client.head_manifest(repository, tag).digest for tag in sorted(tags)}
    return state


@pytest.fixture(scope="module")
def released(tmp_path_factory, tls_registry, mirror, second_engine):
    """The tiny family released twice in a row: 2 Linux variants × 7 platforms over two engines,
    the Windows image pushed by hand first. Both runs, their reports and the registry between."""
    work = tmp_path_factory.mktemp("release")
    versions_path = tiny_family(work / "tiny", REPOSITORY, windows_base=windows_base(mirror), generate=True)
    family = versions.load(versions_path)
    wanted = family.version("1.0.0")
    client = client_for(tls_registry)
    builders = write_builders(work / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", LOCAL),
                              ("second", second_engine.url, SECOND))
    windows = push_windows(client, tls_registry.host, family, wanted,
                           next(v for v in wanted.variants if v.name == WINDOWS), builders)
    args = ("--version", "1.0.0", "--builders", str(builders), "--versions", str(versions_path),
            "--out", str(work / "out"), "--logs", str(work / "logs"))

    first = release(*args, "--report", str(work / "first.json"), registry=tls_registry)
    storage, served = storage_state(tls_registry.storage), registry_state(tls_registry, client)
    second = release(*args, "--report", str(work / "second.json"), registry=tls_registry)
    return dict(work=work, family=family, version=wanted, client=client, windows=windows,
                args=args, builders=builders, first=first, first_report=read_report(work / "first.json"),
                storage=storage, served=served, second=second,
                second_report=read_report(work / "second.json"))


def arch_digests(client: RegistryClient, host: str, version) -> dict[tuple[str, str], str]:
    """{(variant, platform): digest} of every per-arch image of `version` in the registry."""
    digests = {}
    for variant in version.variants:
        for platform in variant.platforms:
            ref = arch_reference(host, REPOSITORY, version, variant, platform)
            head = client.head_manifest(ref.repository, ref.tag)
            assert head is not None, f"{ref} is missing"
            digests[(variant.name, platform.name)] = head.digest
    return digests


def expected_entries(variants) -> list[tuple[str, str, tuple]]:
    """(variant, platform, platform fields) of a tag's list, in list order."""
    linux = [v for v in variants if not v.is_windows]
    assert len(linux) <= 1  # in the tiny family no tag holds two Linux variants
    return ([(v.name, name, fields) for v in linux for name, fields in LINUX_ENTRIES]
            + [(v.name, WINDOWS_ENTRY[0], WINDOWS_ENTRY[1]) for v in variants if v.is_windows])


def entry_fields(entry: dict) -> tuple:
    p = entry["platform"]
    return (p["os"], p["architecture"], p.get("variant"), p.get("os.version"))


def test_a_release_builds_publishes_and_writes_the_pages(released, tls_registry):
    done, report = released["first"], released["first_report"]
    client, version = released["client"], released["version"]
    host = tls_registry.host

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert (report["command"], report["version"], report["repository"], report["registry"]) == \
        ("release", "1.0.0", REPOSITORY, host)
    assert (report["exit_code"], report["result"], report["stopped_at"]) == (0, "ok", None)
    assert [(name, stage["status"]) for name, stage in report["stages"].items()] == \
        [("generate", "ok"), ("build", "ok"), ("publish", "ok"), ("summary", "ok")]

    # Jobs: every Linux one built on the engine the builders file gives its platform, the
    # Windows one skipped for want of an engine; the report's digests are the registry's.
    digests = arch_digests(client, host, version)
    jobs = {job["job"]: job for job in report["jobs"]}
    assert len(jobs) == len(report["jobs"]) == 15
    for (variant, platform), digest in digests.items():
        job = jobs.pop(f"1.0.0/{variant}/{platform}")
        if variant == WINDOWS:
            assert job["status"] == "skipped" and job["engine"] is None
            assert "windows" in job["reason"].lower() and "engine" in job["reason"].lower(), job
            assert digest == released["windows"].digest
            continue
        assert job["status"] == "built", job
        assert job["engine"] == ("local" if platform in LOCAL else "second")
        assert job["digest"] == digest
        ref = arch_reference(host, REPOSITORY, version,
                             next(v for v in version.variants if v.name == variant),
                             next(p for p in version.variants[0].platforms if p.name == platform))
        assert job["pushed"] == [str(ref)]
        assert job["started"] <= job["finished"]
    assert jobs == {}

    # Tags: every tag and shared tag is a manifest list of exactly the right images, in order.
    groups = tag_groups(released["family"], version)
    assert [t["tag"] for t in report["tags"]] == list(groups)
    for tag_report in report["tags"]:
        tag = tag_report["tag"]
        listed = client.get_manifest(REPOSITORY, tag)
        expected = expected_entries(groups[tag])
        assert listed.media_type == DOCKER_LIST, tag
        assert [entry_fields(e) for e in listed.json["manifests"]] == [e[2] for e in expected], tag
        assert [e["digest"] for e in listed.json["manifests"]] == \
            [digests[(variant, platform)] for variant, platform, _ in expected], tag
        assert tag_report["status"] == "written"
        assert tag_report["digest"] == listed.digest
        assert tag_report["reference"] == f"{host}/{REPOSITORY}:{tag}"
        assert len(tag_report["platforms"]) == len(expected) and tag_report["missing"] == []
    assert set(groups) >= {"1.0.0", "1.0", "1", "latest", "1.0.0-busybox", "slim",
                           "1.0.0-windowsservercore", "windowsservercore-1809"}
    assert [e[1] for e in expected_entries(groups["latest"])][-1] == "windows-amd64"

    # Summary pages: one per tag where the report says, naming the digests the registry serves.
    out = released["work"] / "out"
    assert [s["tag"] for s in report["summaries"]] == list(groups)
    for page in report["summaries"]:
        path = Path(page["path"])
        assert path == out / REPOSITORY / "remote" / f"{page['tag']}.md"
        text = path.read_text()
        listed = client.get_manifest(REPOSITORY, page["tag"])
        assert text.startswith(f"## `{host}/{REPOSITORY}:{page['tag']}`\n")
        assert f"$ docker pull {host}/{REPOSITORY}@{listed.digest}\n" in text
        for entry in listed.json["manifests"]:
            assert f"$ docker pull {host}/{REPOSITORY}@{entry['digest']}\n" in text
        if any(v.is_windows for v in groups[page["tag"]]):
            assert "\t-\twindows version 10.0.17763.805; amd64\n" in text
    assert sorted(p.name for p in (out / REPOSITORY / "remote").iterdir()) == \
        sorted(f"{tag}.md" for tag in groups)


def test_a_second_release_skips_everything_and_writes_nothing_to_the_registry(released,
                                                                              tls_registry):
    first, done, report = released["first_report"], released["second"], released["second_report"]

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert (report["exit_code"], report["stopped_at"]) == (0, None)
    stages = {name: {k: v for k, v in stage.items() if k != "seconds"}
              for name, stage in report["stages"].items()}
    assert stages["build"] == {"status": "ok", "skipped": 15}
    assert stages["publish"] == {"status": "ok", "unchanged": len(first["tags"])}
    assert all(stage["seconds"] >= 0 for stage in report["stages"].values())
    before = {job["job"]: job for job in first["jobs"]}
    for job in report["jobs"]:
        assert job["status"] == "skipped", job
        assert job["digest"] == before[job["job"]]["digest"]
        assert job["pushed"] == [] and job["started"] is None
        if job["job"].endswith("/windows-amd64"):
            assert job["reason"] == before[job["job"]]["reason"]
        else:
            assert job["reason"].startswith("unchanged: "), job
    assert [(t["tag"], t["status"], t["digest"]) for t in report["tags"]] == \
        [(t["tag"], "unchanged", t["digest"]) for t in first["tags"]]
    assert [s["path"] for s in report["summaries"]] == [s["path"] for s in first["summaries"]]
    # Nothing written: not a blob, not a link file, not an upload directory.
    assert registry_state(tls_registry, released["client"]) == released["served"]
    assert storage_state(tls_registry.storage) == released["storage"]


def test_a_missing_windows_image_stops_the_release_at_publish_and_leaves_the_tags(
        released, tls_registry):
    client, version = released["client"], released["version"]
    windows_variant = next(v for v in version.variants if v.name == WINDOWS)
    windows_ref = arch_reference(tls_registry.host, REPOSITORY, version, windows_variant,
                                 windows_variant.platforms[0])
    groups = tag_groups(released["family"], version)
    served = registry_state(tls_registry, client)[REPOSITORY]
    report_path = released["work"] / "missing.json"
    gone = requests.delete(f"{tls_registry.url}/v2/{REPOSITORY}/manifests/{released['windows'].digest}",
                           auth=tls_registry.auth, verify=tls_registry.verify, timeout=30)
    assert gone.status_code == 202
    try:
        done = release(*released["args"], "--report", str(report_path), registry=tls_registry)
        after = registry_state(tls_registry, client)[REPOSITORY]
    finally:  # the same bytes again: the same digest, for the other tests of the module
        again = push_windows(client, tls_registry.host, released["family"], version,
                             windows_variant, released["builders"])
    assert again.digest == released["windows"].digest

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    assert "release stopped at stage 'publish'" in done.stderr
    report = read_report(report_path)
    assert (report["exit_code"], report["result"], report["stopped_at"]) == (1, "failed", "publish")
    assert report["stages"]["build"]["status"] == "ok"
    needs_windows = [tag for tag, variants in groups.items() if windows_variant in variants]
    assert report["stages"]["publish"]["failed"] == needs_windows
    assert "summary" not in report["stages"] and report["summaries"] == []
    for tag in report["tags"]:
        if tag["tag"] in needs_windows:
            assert tag["status"] == "failed" and tag["missing"] == [str(windows_ref)], tag
        else:
            assert tag["status"] == "unchanged", tag
    # Every tag still points where it pointed; only the per-arch image is gone.
    assert after == {tag: digest for tag, digest in served.items() if tag != windows_ref.tag}


def test_a_windows_image_of_another_build_is_stale_and_its_tags_are_left(released, tls_registry):
    """No engine builds Windows here, so the release takes the Windows image from the registry
    only at the plan's build hash: one pushed from another tree (another hash) is refused."""
    client, version = released["client"], released["version"]
    windows_variant = next(v for v in version.variants if v.name == WINDOWS)
    platform = windows_variant.platforms[0]
    windows_ref = arch_reference(tls_registry.host, REPOSITORY, version, windows_variant, platform)
    groups = tag_groups(released["family"], version)
    served = registry_state(tls_registry, client)[REPOSITORY]
    report_path = released["work"] / "stale-windows.json"
    push_image(client, windows_ref.repository, windows_ref.tag, platform, label=version.full,
               foreign_layer=False, build_hash="sha256:" + "0" * 64)
    try:
        done = release(*released["args"], "--report", str(report_path), registry=tls_registry)
        after = registry_state(tls_registry, client)[REPOSITORY]
    finally:  # the image the plan's hash names again, for the other tests of the module
        again = push_windows(client, tls_registry.host, released["family"], version,
                             windows_variant, released["builders"])
    assert again.digest == released["windows"].digest

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    report = read_report(report_path)
    assert (report["stopped_at"], report["stages"]["build"]["status"]) == ("publish", "ok")
    needs_windows = [tag for tag, variants in groups.items() if windows_variant in variants]
    assert report["stages"]["publish"]["failed"] == needs_windows
    for tag in report["tags"]:
        if tag["tag"] in needs_windows:
            assert (tag["status"], tag["stale"]) == ("failed", [str(windows_ref)]), tag
            assert tag["reason"].startswith(f"{windows_ref} is stale: it has sha256:{'0' * 64}, "
                                            "the plan builds sha256:"), tag
        else:
            assert tag["status"] == "unchanged", tag
    # The tags still list the Windows image they listed; only the per-arch tag was moved.
    assert {t: d for t, d in after.items() if t != windows_ref.tag} == \
        {t: d for t, d in served.items() if t != windows_ref.tag}


def test_a_stale_tree_stops_the_release_before_anything_is_built(tmp_path, tls_registry, mirror):
    versions_path = tiny_family(tmp_path / "tiny", "tiny-stale", generate=True)
    dockerfile = sorted((tmp_path / "tiny").rglob("Dockerfile"))[0]
    dockerfile.write_text(dockerfile.read_text() + "RUN echo edited by hand\n")
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", LOCAL + SECOND))

    done = release("--version", "1.0.0", "--builders", str(builders), "--versions",
                   str(versions_path), "--report", str(tmp_path / "report.json"),
                   "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs"),
                   registry=tls_registry)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "release stopped at stage 'generate'" in done.stderr
    relative = dockerfile.relative_to(tmp_path / "tiny")
    assert f"stale: {dockerfile}: stale (first difference at line" in done.stdout
    assert "== build and push" not in done.stdout
    report = read_report(tmp_path / "report.json")
    assert (report["exit_code"], report["stopped_at"]) == (1, "generate")
    assert list(report["stages"]) == ["generate"]
    assert report["stages"]["generate"]["problems"][0].startswith(f"{relative}: stale")
    assert report["jobs"] == report["tags"] == report["summaries"] == []
    assert "tiny-stale" not in tls_registry.get("/v2/_catalog?n=1000").json()["repositories"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_an_unknown_version_is_bad_input(tmp_path, tls_registry, tiny_family_path):
    done = release("--version", "9.9.9", "--versions", str(tiny_family_path),
                   "--report", str(tmp_path / "report.json"), registry=tls_registry)

    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "9.9.9" in done.stderr
    assert "== " not in done.stdout


def test_a_bad_builders_file_is_bad_input_and_the_report_says_where_it_stopped(
        tmp_path, tls_registry):
    versions_path = tiny_family(tmp_path / "tiny", "tiny-badbuilders", generate=True)
    builders = tmp_path / "builders.yaml"
    builders.write_text("engines:\n  - name: local\n    url: unix:///var/run/docker.sock\n"
                        "    platforms: [linux/sparc]\n")

    done = release("--version", "1.0.0", "--builders", str(builders), "--versions",
                   str(versions_path), "--report", str(tmp_path / "report.json"),
                   "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out"),
                   registry=tls_registry)

    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "sparc" in done.stderr
    report = read_report(tmp_path / "report.json")
    assert (report["exit_code"], report["stopped_at"]) == (2, "build")
    assert report["stages"]["generate"]["status"] == "ok"
    assert report["stages"]["build"]["status"] == "failed"
    assert "sparc" in report["stages"]["build"]["reason"]
    assert report["jobs"] == report["tags"] == []
