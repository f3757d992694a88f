"""Publish only what this run verified: the publish rules.

The pure rules first (`builder.publish.rules.decide` and the build-report handover), then the
rules end to end: the tiny family built by the local engine, pushed to the TLS registry, and
published by `invoke release` / `invoke publish` as a pipeline runs them (subprocesses).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.model import versions
from builder.farm.builders import Builders, Engine
from builder.model.errors import InputError, MovedMember, StaleMember
from builder.model.platforms import PLATFORMS
from builder.publish.rules import (Found, Verified, decide, hashing_builders, verified_from_report,
                                   verified_jobs)
from builder.model.tags import tag_groups
from test_build import write_builders
from test_release import (INVOKE, ROOT, client_for, credentials_env, family_tree, read_report,
                          release)
from windows_images import push_image

TINY = Path(__file__).resolve().parent / "fixtures" / "tiny" / "versions.yaml"
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
H1, H2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
KEY, CHILD = "1.0.0/busybox/amd64", "1.0.0/slim-busybox/amd64"
REFS = {KEY: "r/tiny:1.0.0-busybox-amd64", CHILD: "r/tiny:1.0.0-slim-busybox-amd64"}


def planned(hashes: dict):
    """The plan's hash per (key, parent digest); a key it lacks cannot be hashed."""
    def hash_now(key: str, parent: str | None) -> str:
        if (key, parent) not in hashes:
            raise InputError(f"cannot pin base image of {key}")
        return hashes[(key, parent)]
    return hash_now


def one(found=None, verified=None, hashes=None) -> object:
    verdicts = decide([KEY], references=REFS, found={KEY: found},
                      verified={KEY: verified} if verified else {}, parents={},
                      hash_now=planned(hashes or {}))
    return verdicts[KEY]


# --- the pure rules ---------------------------------------------------------------------------

def test_a_member_this_run_verified_is_used_at_its_digest():
    verdict = one(Found(A, H1), Verified(A, H1))
    assert (verdict.digest, verdict.problem) == (A, None)


def test_a_member_that_moved_since_this_run_pushed_it_refuses_its_tag():
    verdict = one(Found(B, H1), Verified(A, H1))  # the same hash: still not this run's image
    assert verdict.digest is None and isinstance(verdict.problem, MovedMember)
    assert str(verdict.problem).startswith(f"{REFS[KEY]} moved: this run pushed or verified "
                                           f"{A} there, the registry now holds {B}")
    gone = one(None, Verified(A, H1))
    assert isinstance(gone.problem, MovedMember) and "no longer holds" in str(gone.problem)


def test_a_member_not_built_here_is_used_only_at_the_plans_hash():
    assert one(Found(A, H1), hashes={(KEY, None): H1}).digest == A
    stale = one(Found(A, H1), hashes={(KEY, None): H2})
    assert stale.digest is None and isinstance(stale.problem, StaleMember)
    assert f"{REFS[KEY]} is stale: it has {H1}, the plan builds {H2} now" in str(stale.problem)
    assert "amd64" in str(stale.problem).split("in this run")[1]
    unlabelled = one(Found(A, ""), hashes={(KEY, None): H1})
    assert isinstance(unlabelled.problem, StaleMember)
    assert "no build hash label" in str(unlabelled.problem)
    unknown = one(Found(A, H1))  # the plan's hash cannot be computed: not shown current
    assert isinstance(unknown.problem, StaleMember)
    assert "cannot be shown current" in str(unknown.problem)
    assert "cannot pin base image" in str(unknown.problem)


def test_an_absent_member_is_neither_used_nor_refused():
    verdict = one(None, hashes={(KEY, None): H1})
    assert verdict.absent and verdict.reference == REFS[KEY]


def test_a_child_is_hashed_from_its_parents_digest_and_is_stale_with_it():
    found = {KEY: Found(A, H1), CHILD: Found(B, H2)}
    hashes = {(KEY, None): H1, (CHILD, A): H2}

    verdicts = decide([CHILD], references=REFS, found=found, verified={},
                      parents={CHILD: KEY}, hash_now=planned(hashes))
    assert (verdicts[CHILD].digest, verdicts[KEY].digest) == (B, A)

    stale_parent = decide([CHILD], references=REFS, found=found, verified={},
                          parents={CHILD: KEY}, hash_now=planned({**hashes, (KEY, None): H2}))
    assert isinstance(stale_parent[KEY].problem, StaleMember)
    assert isinstance(stale_parent[CHILD].problem, StaleMember)
    assert f"builds FROM {REFS[KEY]}, which is not current" in str(stale_parent[CHILD].problem)


def _job(key=KEY, status="built", digest=A, build_hash=H1, image=None) -> dict:
    return {"job": key, "status": status, "digest": digest, "build_hash": build_hash,
            "image": image or REFS.get(key)}


def test_a_builds_jobs_vouch_for_what_they_pushed_or_found_unchanged():
    jobs = [_job(), _job(CHILD, "skipped", B, H2),  # found unchanged
            _job("1.0.0/busybox/i386", "failed", None, H1),
            _job("1.0.0/windowsservercore-1809/windows-amd64", "skipped", None, None)]
    assert verified_jobs(jobs, "build.json", REFS) == {KEY: Verified(A, H1), CHILD: Verified(B, H2)}


def test_a_build_report_of_another_registry_layout_or_version_is_bad_input():
    with pytest.raises(InputError, match=r"build.json: jobs\[0\].image: .*another registry"):
        verified_jobs([_job(image="other/tiny:1.0.0-busybox-amd64")], "build.json", REFS)
    with pytest.raises(InputError, match=r"build.json: jobs\[0\].job: 9.9.9/x/amd64 is no job"):
        verified_jobs([_job("9.9.9/x/amd64")], "build.json", REFS)
    with pytest.raises(InputError, match=r"build.json: jobs\[0\].digest: 'md5:1' is not a sha256"):
        verified_jobs([_job(digest="md5:1")], "build.json", REFS)
    with pytest.raises(InputError, match=r"build.json: jobs\[1\]: not a job object"):
        verified_jobs([_job(), []], "build.json", REFS)
    document = {"version": "1.0.0", "registry": "r", "jobs": [_job()]}
    assert verified_from_report(document, "build.json", "1.0.0", "r", REFS) == {KEY: Verified(A, H1)}
    with pytest.raises(InputError, match=r"build.json: version: '1.0.0', but this publish is of '0.9.1'"):
        verified_from_report(document, "build.json", "0.9.1", "r", REFS)
    with pytest.raises(InputError, match=r"build.json: registry: 'r', but"):
        verified_from_report(document, "build.json", "1.0.0", "elsewhere", REFS)
    with pytest.raises(InputError, match="not a build report"):
        verified_from_report([], "build.json", "1.0.0", "r", REFS)


def test_the_hashing_builders_serve_every_platform_and_keep_the_mirrors():
    family = versions.load(TINY)
    version = family.version("1.0.0")
    real = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),), base_mirror="m:5000")
    every = hashing_builders(real, version)
    assert every.base_mirror == "m:5000" and every.mirrors == real.mirrors
    for variant in version.variants:
        for platform in variant.platforms:
            assert every.pool_for(platform), platform
    windows = next(v for v in version.variants if v.is_windows).platforms[0]
    assert every.pool_for(windows)[0].os_version == "10.0.17763"


# --- end to end: the local engine, the TLS registry, the commands a pipeline runs -----------

SOCKET = "unix:///var/run/docker.sock"


def _tree(tmp_path: Path, repository: str, mirror) -> tuple[Path, Path]:
    versions_path = family_tree(tmp_path / "tiny", repository)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", SOCKET, ("amd64", "i386")))
    return versions_path, builders


def _invoke(task: str, *args: str, registry) -> subprocess.CompletedProcess:
    return subprocess.run([str(INVOKE), task, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **credentials_env(registry)})


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
    generated = subprocess.run([str(INVOKE), "generate", "--versions", str(versions_path)],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert generated.returncode == 0, generated.stderr
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
    built = _invoke("build", *common, "--push", "--logs", str(tmp_path / "logs"),
                    "--report", str(tmp_path / "build.json"), registry=tls_registry)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    jobs = {j["job"]: j for j in read_report(tmp_path / "build.json")["jobs"]}
    ours = jobs["1.0.0/busybox/i386"]

    # Another release moves the i386 tag meanwhile, to an image that even claims the same build
    # hash: it is still not the image this build pushed.
    moved = _arch(tls_registry, repository, "i386")
    theirs = push_image(client, repository, moved.rsplit(":", 1)[1], PLATFORMS["i386"],
                        label="a concurrent release", build_hash=ours["build_hash"]).digest
    publish_args = (*common, "--ca-bundle", str(tls_registry.ca_bundle))
    done = _invoke("publish", *publish_args, "--from-report", str(tmp_path / "build.json"),
                   "--report", str(tmp_path / "publish.json"), registry=tls_registry)

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
    bad = _invoke("publish", *publish_args, "--from-report", str(tmp_path / "other.json"),
                  registry=tls_registry)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr == (f"error: {tmp_path / 'other.json'}: version: '0.9.1', but this "
                          "publish is of '1.0.0'\n")
