"""The plan as a pipeline reads it (`plan --format json|github-matrix`, the emulation warning,
the dry run's report): pure, from the tiny family and builders as values."""
from __future__ import annotations

import json

import pytest

from builder.model.builders import Builders, Engine
from builder.model import versions
from builder.model.platforms import PLATFORMS
from builder.plan import listing
from builder.plan.plan import plan
from tests.helpers.cli import python_image_builder
from tests.helpers.paths import TINY_FAMILY

LINUX = tuple(p for p in PLATFORMS.values() if p.os == "linux")
LOCAL = Engine("local", "unix:///var/run/docker.sock", LINUX)
AMD64 = listing.host_architectures("amd64")


@pytest.fixture(scope="module")
def tiny():
    return versions.load(TINY_FAMILY)


def test_a_local_engine_emulates_what_this_machine_does_not_run(tiny):
    the_plan = plan(tiny, "1.0.0", ("busybox",), builders=Builders((LOCAL,)))

    document = listing.document(the_plan, AMD64)

    emulated = {job["platform"]: job["emulated"] for job in document["jobs"]}
    assert emulated == {"amd64": False, "arm32v5": True, "arm32v7": True, "arm64v8": True,
                        "i386": False, "ppc64le": True, "s390x": True}
    arm = next(job for job in document["jobs"] if job["platform"] == "arm64v8")
    assert arm == {
        "job": "1.0.0/busybox/arm64v8", "version": "1.0.0", "variant": "busybox",
        "platform": "arm64v8", "oci_platform": "linux/arm64/v8", "pool": ["local"],
        "image": "tiny:1.0.0-busybox-arm64v8", "parent": None, "emulated": True,
        "tags": ["1.0.0-busybox", "1.0-busybox", "1-busybox", "busybox", "1.0.0", "1.0", "1",
                 "latest"],
        "estimate_minutes": listing.NATIVE_MINUTES * listing.EMULATION_FACTOR["arm64v8"]}
    assert document["emulated"] == 5
    assert document["estimate_minutes"] == sum(job["estimate_minutes"] for job in document["jobs"])
    assert document["skipped"] == []
    json.dumps(document)  # what `plan --format json` prints


def test_a_remote_engine_builds_its_listed_platforms_natively(tiny):
    arm = Engine("arm-node", "tcp://10.0.0.7:2376", (PLATFORMS["arm64v8"],), plain=True)
    amd = Engine("local", "unix:///var/run/docker.sock", (PLATFORMS["amd64"],))
    the_plan = plan(tiny, "1.0.0", ("busybox",), ("amd64", "arm64v8"),
                    builders=Builders((amd, arm)))

    assert [(e.job.platform.name, e.emulated, e.minutes) for e in listing.listed(the_plan, AMD64)] \
        == [("amd64", False, listing.NATIVE_MINUTES), ("arm64v8", False, listing.NATIVE_MINUTES)]
    assert listing.emulation_warning(the_plan, AMD64) is None


def test_the_warning_counts_the_emulated_jobs_and_their_hours(tiny):
    the_plan = plan(tiny, "1.0.0", ("busybox", "slim-busybox"), ("amd64", "s390x"),
                    builders=Builders((LOCAL,)))

    hours = 2 * listing.NATIVE_MINUTES * listing.EMULATION_FACTOR["s390x"] / 60
    warning = listing.emulation_warning(the_plan, AMD64)
    assert warning.startswith(f"warning: 2 of 4 jobs run under emulation (QEMU): s390x; about "
                              f"{hours:.1f} h of build time")
    # On an s390x machine the same plan emulates amd64 instead.
    assert ": amd64; about" in listing.emulation_warning(
        the_plan, listing.host_architectures("s390x"))


def test_the_matrix_has_an_entry_per_job_or_per_platform(tiny):
    the_plan = plan(tiny, "1.0.0", ("busybox", "slim-busybox"), ("amd64", "arm64v8"),
                    builders=Builders((LOCAL,)))

    per_job = listing.matrix(the_plan, AMD64)["include"]
    assert [(e["job"], e["platform"], e["emulated"]) for e in per_job] == [
        ("1.0.0/busybox/amd64", "amd64", False), ("1.0.0/busybox/arm64v8", "arm64v8", True),
        ("1.0.0/slim-busybox/amd64", "amd64", False),
        ("1.0.0/slim-busybox/arm64v8", "arm64v8", True)]
    per_platform = listing.matrix(the_plan, AMD64, "platform")["include"]
    assert per_platform == [
        {"platform": "amd64", "version": "1.0.0", "jobs": 2, "emulated": False,
         "estimate_minutes": 2 * listing.NATIVE_MINUTES},
        {"platform": "arm64v8", "version": "1.0.0", "jobs": 2, "emulated": True,
         "estimate_minutes": 2 * listing.NATIVE_MINUTES * listing.EMULATION_FACTOR["arm64v8"]}]


def test_the_matrix_keeps_the_jobs_no_engine_here_serves(tiny):
    # A planning runner without Docker still gives every build runner its platform.
    the_plan = plan(tiny, "1.0.0", ("busybox",), ("amd64", "i386"),
                    builders=Builders((), problem="cannot reach the local Docker engine"))

    assert the_plan.jobs == ()
    assert [e["platform"] for e in listing.matrix(the_plan, AMD64, "platform")["include"]] == [
        "amd64", "i386"]
    assert listing.document(the_plan, AMD64)["jobs"] == []


def test_planned_jobs_are_the_document_jobs_marked_planned(tiny):
    the_plan = plan(tiny, "1.0.0", ("busybox",), ("amd64",), builders=Builders((LOCAL,)))

    assert listing.planned_jobs(the_plan, AMD64) == [
        dict(job, status="planned") for job in listing.document(the_plan, AMD64)["jobs"]]


def test_every_platform_has_a_factor():
    assert set(listing.EMULATION_FACTOR) == set(PLATFORMS)


def test_the_plan_command_prints_the_formats_and_refuses_an_unknown_one(tmp_path):
    args = ("plan", "--version", "1.0.0", "--versions", str(TINY_FAMILY), "--variant", "busybox",
            "--platform", "amd64,i386")
    matrix = python_image_builder(*args, "--format", "github-matrix", "--per", "platform",
                                  cwd=tmp_path)
    assert matrix.returncode == 0, matrix.stderr
    assert [e["platform"] for e in json.loads(matrix.stdout)["include"]] == ["amd64", "i386"]
    as_json = python_image_builder(*args, "--format", "json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["version"] == "1.0.0"
    bad = python_image_builder(*args, "--format", "yaml", cwd=tmp_path)
    assert (bad.returncode, bad.stderr) == (
        2, "error: --format: 'yaml' is no format; use text, json, github-matrix\n")
