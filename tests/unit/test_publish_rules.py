"""Publish only what this run verified: the rules deciding, for each member of a tag, whether
it is used, refused as moved or stale, or left out; read from values, no registry."""
from __future__ import annotations

import json

import pytest

from builder.model import versions
from builder.model.builders import Builders, Engine
from builder.model.errors import InputError, MovedMember, StaleMember
from builder.farm.results import JobResult
from builder.model.platforms import PLATFORMS
from builder.model.report import Status
from builder.plan.plan import plan
from builder.publish.rules import (Found, Verified, decide, verified_builds, verified_from_report,
                                   verified_jobs)
from tests.helpers.paths import TINY_FAMILY

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


def test_the_plan_holds_every_member_whichever_engines_serve_it():
    family = versions.load(TINY_FAMILY)
    version = family.version("1.0.0")
    real = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),), base_mirror="m:5000")
    selected = plan(family, version, ("busybox",), ("amd64",), builders=real)
    assert selected.builders.base_mirror == "m:5000"
    assert [job.key for job in selected.jobs] == [KEY]
    members = {job.key: job for job in selected.members}
    assert list(members) == [f"1.0.0/{variant.name}/{platform.name}"
                             for variant in version.variants for platform in variant.platforms]
    assert members[KEY] == selected.jobs[0]
    assert members["1.0.0/busybox/i386"].pool == ()  # no engine serves it: planned all the same
    windows = next(v for v in version.variants if v.is_windows)
    assert members[f"1.0.0/{windows.name}/windows-amd64"].platform.os_version == "10.0.17763"


def test_a_release_hands_publish_the_values_a_build_report_gives():
    results = [JobResult(KEY, "amd64", "local", Status.BUILT, image=REFS[KEY], digest=A,
                         build_hash=H1),
               JobResult(CHILD, "amd64", None, Status.SKIPPED, "unchanged", image=REFS[CHILD],
                         digest=B, build_hash=H2),
               JobResult("1.0.0/busybox/i386", "i386", "local", Status.FAILED, "x", build_hash=H1),
               JobResult("1.0.0/busybox/s390x", "s390x", "local", Status.BUILT, build_hash=H1)]
    assert verified_builds(results) == {KEY: Verified(A, H1), CHILD: Verified(B, H2)}
    assert verified_builds(results) == verified_jobs([r.as_dict() for r in results],
                                                     "build.json", REFS)
