"""Publish only what this run verified.

The pure rules (`builder.publish.rules.decide` and the build-report handover) are tested on
values in tests/unit/test_publish_rules.py; here, the rules end to end: the tiny family built by the local engine, pushed to the TLS registry, and
published by `invoke release` / `invoke publish` as a pipeline runs them (subprocesses).
"""
from __future__ import annotations

import json
from pathlib import Path

from builder.model import versions
from builder.model.platforms import PLATFORMS
from builder.publish.rules import decide
from builder.model.tags import tag_groups
from tests.helpers.builders import write_builders
from tests.helpers.cli import generate, invoke, release
from tests.helpers.families import tiny_family
from tests.helpers.registries import client_for, credentials_env, read_report
from tests.helpers.windows_images import push_image


# --- the pure rules ---------------------------------------------------------------------------


# --- end to end: the local engine, the TLS registry, the commands a pipeline runs -----------

SOCKET = "unix:///var/run/docker.sock"


def _tree(tmp_path: Path, repository: str, mirror) -> tuple[Path, Path]:
    versions_path = tiny_family(tmp_path / "tiny", repository, generate=True)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", SOCKET, ("amd64", "i386")))
    return versions_path, builders


def _busybox_tags(versions_path: Path) -> list[str]:
    family = versions.load(versions_path)
    return list(tag_groups(family, family.version("1.0.0"), ("busybox",)))


def _arch(registry, repository: str, platform: str) -> str:
    return f"{registry.host}/{repository}:1.0.0-busybox-{platform}"


def _platforms(client, repository: str, tag: str) -> list[tuple[str, str]]:
    listed = client.get_manifest(repository, tag).json["manifests"]
    return [(m["platform"]["architecture"], m["digest"]) for m in listed]


def test_a_platform_release_lists_the_current_others_and_refuses_a_stale_one(
        tmp_path, tls_registry, mirror):
    repository = "tiny-rules"
    versions_path, builders = _tree(tmp_path, repository, mirror)
    client = client_for(tls_registry)
    args = ("--version", "1.0.0", "--variant", "busybox", "--builders", str(builders),
            "--versions", str(versions_path), "--out", str(tmp_path / "out"),
            "--logs", str(tmp_path / "logs"))
    tags = _busybox_tags(versions_path)

    # i386 alone: amd64 is in no registry yet, so the lists are of i386.
    first = release(*args, "--platform", "i386", "--report", str(tmp_path / "1.json"),
                    registry=tls_registry)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    i386 = {j["job"]: j for j in read_report(tmp_path / "1.json")["jobs"]}["1.0.0/busybox/i386"]
    assert i386["status"] == "built"
    assert all(_platforms(client, repository, tag) == [("386", i386["digest"])] for tag in tags)

    # amd64 alone: this run did not build i386, but its build hash is the plan's: listed too.
    second = release(*args, "--platform", "amd64", "--report", str(tmp_path / "2.json"),
                     registry=tls_registry)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    report = read_report(tmp_path / "2.json")
    assert [(j["job"], j["status"]) for j in report["jobs"]] == [("1.0.0/busybox/amd64", "built")]
    amd64 = report["jobs"][0]["digest"]
    assert [(t["tag"], t["status"]) for t in report["tags"]] == [(tag, "written") for tag in tags]
    for tag in tags:
        assert _platforms(client, repository, tag) == [("amd64", amd64), ("386", i386["digest"])]
    published = {tag: client.head_manifest(repository, tag).digest for tag in tags}

    # The template changes: i386's image is no longer what the plan builds. A release of amd64
    # alone builds amd64 anew and refuses every tag, naming i386 as stale.
    template = tmp_path / "tiny" / "templates" / "busybox.Dockerfile.j2"
    template.write_text(template.read_text() + 'LABEL org.example.revision="2"\n')
    generate(versions_path)
    third = release(*args, "--platform", "amd64", "--report", str(tmp_path / "3.json"),
                    registry=tls_registry)
    assert third.returncode == 1, third.stdout[-3000:] + third.stderr
    assert "release stopped at stage 'publish'" in third.stderr
    report = read_report(tmp_path / "3.json")
    assert report["stopped_at"] == "publish"
    assert report["jobs"][0]["status"] == "built" and report["jobs"][0]["digest"] != amd64
    stale = _arch(tls_registry, repository, "i386")
    for tag in report["tags"]:
        assert (tag["status"], tag["stale"], tag["moved"]) == ("failed", [stale], []), tag
        assert tag["reason"].startswith(f"{stale} is stale: it has {i386['build_hash']}, "
                                        "the plan builds sha256:"), tag
        assert tag["reason"].endswith("; the tag is left as it was")
    assert f"{tls_registry.host}/{repository}:{tags[0]}: failed: {stale} is stale" in third.stdout
    assert {tag: client.head_manifest(repository, tag).digest for tag in tags} == published


def test_a_per_arch_tag_moved_between_build_and_publish_fails_its_tags(
        tmp_path, tls_registry, mirror):
    repository = "tiny-moved"
    versions_path, builders = _tree(tmp_path, repository, mirror)
    client = client_for(tls_registry)
    common = ("--version", "1.0.0", "--variant", "busybox", "--platform", "amd64",
              "--platform", "i386", "--registry", tls_registry.host, "--builders", str(builders),
              "--versions", str(versions_path))
    built = invoke("build", *common, "--push", "--logs", str(tmp_path / "logs"),
                   "--report", str(tmp_path / "build.json"), env=credentials_env(tls_registry))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    jobs = {j["job"]: j for j in read_report(tmp_path / "build.json")["jobs"]}
    ours = jobs["1.0.0/busybox/i386"]

    # Another release moves the i386 tag meanwhile, to an image that even claims the same build
    # hash: it is still not the image this build pushed.
    moved = _arch(tls_registry, repository, "i386")
    theirs = push_image(client, repository, moved.rsplit(":", 1)[1], PLATFORMS["i386"],
                        label="a concurrent release", build_hash=ours["build_hash"]).digest
    publish_args = (*common, "--ca-bundle", str(tls_registry.ca_bundle))
    done = invoke("publish", *publish_args, "--from-report", str(tmp_path / "build.json"),
                  "--report", str(tmp_path / "publish.json"), env=credentials_env(tls_registry))

    assert done.returncode == 1, done.stdout + done.stderr
    tags = _busybox_tags(versions_path)
    report = read_report(tmp_path / "publish.json")
    assert report["stages"]["publish"]["failed"] == tags
    for tag in report["tags"]:
        assert (tag["status"], tag["moved"], tag["stale"]) == ("failed", [moved], []), tag
    assert (f"{moved} moved: this run pushed or verified {ours['digest']} there, the registry "
            f"now holds {theirs}" in done.stdout)
    assert all(client.head_manifest(repository, tag) is None for tag in tags)

    # A report of another version is bad input: nothing is read or written.
    other = json.loads((tmp_path / "build.json").read_text()) | {"version": "0.9.1"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    bad = invoke("publish", *publish_args, "--from-report", str(tmp_path / "other.json"),
                 env=credentials_env(tls_registry))
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr == (f"error: {tmp_path / 'other.json'}: version: '0.9.1', but this "
                          "publish is of '1.0.0'\n")
