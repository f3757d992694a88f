"""`invoke release` of the example family (examples/hello: 2 variants × 7 platforms) on one engine,
once per engine kind, both through the classic builder.

The host's 20.10 on its graphdriver store pushes Docker v2 manifests, and every tag becomes a
Docker manifest list. Docker 28.5 on the containerd image store pushes OCI manifests, and every
tag becomes an OCI index; its classic builder drops the arm variant, so arm32v5 is left out
there (`--platform` names the others). In both, every per-arch digest in the report is the one
the registry serves, each tag lists exactly the report's images in the platform table's order,
an engine pulling a tag for a platform runs the image built for it, and a second release builds
and writes nothing.
"""
from __future__ import annotations

import pytest

from builder.model.platforms import PLATFORMS
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, ImageRef
from builder.plan.plan import build_args
from builder.registry.client import RegistryClient
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from tests.helpers.families import example_family
from tests.helpers.registries import read_report

HELLO_PLATFORMS = ("amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x")
VARIANTS = ("busybox", "slim-busybox")
# What each store pushes, and so what a tag of its images is.
MEDIA_TYPES = {"classic": (DOCKER_MANIFEST, DOCKER_LIST), "modern": (OCI_MANIFEST, OCI_INDEX)}


def key(job: dict) -> tuple[str, str]:
    """(variant, platform) of a report's job."""
    _, variant, platform = job["job"].split("/")
    return variant, platform


@pytest.fixture(scope="module")
def released(tmp_path_factory, build_engine, kind_registry, mirror):
    """The family released twice on `build_engine` alone, to the kind's registry."""
    work = tmp_path_factory.mktemp(f"hello-{build_engine.kind}")
    repository = f"hello-{build_engine.kind}"
    versions_path = example_family(work / "hello", "hello", repository)
    builders = write_builders(work / "builders.yaml", mirror.host,
                              build_engine.spec(*HELLO_PLATFORMS))
    platforms = build_engine.platforms(*HELLO_PLATFORMS)
    selection = [arg for name in platforms for arg in ("--platform", name)]

    def release(report: str):
        done = invoke("release", "--version", "1.0.0", *selection, "--registry", kind_registry.host,
                      "--builders", str(builders), "--versions", str(versions_path),
                      "--out", str(work / "out"), "--logs", str(work / "logs"),
                      "--report", str(work / report))
        return done, read_report(work / report)

    first, first_report = release("first.json")
    second, second_report = release("second.json")
    return dict(repository=repository, platforms=platforms, first=first, report=first_report,
                second=second, second_report=second_report,
                client=RegistryClient(kind_registry.host))


def test_every_job_is_built_on_the_engine_and_pushed_at_the_digest_the_registry_serves(
        released, build_engine):
    done, report, client = released["first"], released["report"], released["client"]
    manifest_type, _ = MEDIA_TYPES[build_engine.kind]

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = {key(job): job for job in report["jobs"]}
    assert set(jobs) == {(v, p) for v in VARIANTS for p in released["platforms"]}
    for (variant, platform), job in jobs.items():
        assert (job["status"], job["engine"]) == ("built", build_engine.name), job
        [pushed] = job["pushed"]
        ref = ImageRef.parse(pushed)
        served = client.get_manifest(ref.repository, ref.tag)
        assert (served.digest, served.media_type) == (job["digest"], manifest_type), job
        config = client.get_config(ref.repository, served)
        assert PLATFORMS[platform].matches(config["os"], config["architecture"],
                                           config.get("variant")), (job, config)


def test_every_tag_lists_the_jobs_images_in_order_as_the_stores_kind_of_list(
        released, build_engine):
    report, client = released["report"], released["client"]
    manifest_type, list_type = MEDIA_TYPES[build_engine.kind]
    digests = {key(job): job["digest"] for job in report["jobs"]}

    assert {t["tag"] for t in report["tags"]} >= {"1.0.0", "1.0", "1", "latest", "slim"}
    for tag in report["tags"]:
        listed = client.get_manifest(released["repository"], tag["tag"])
        assert (tag["status"], tag["digest"], tag["media_type"]) == \
            ("written", listed.digest, list_type), tag
        assert listed.json["mediaType"] == list_type == listed.media_type
        [variant] = {member.split("/")[1] for member in tag["members"]}
        entries = listed.json["manifests"]
        assert [e["digest"] for e in entries] == \
            [digests[(variant, p)] for p in released["platforms"]], tag
        for entry, platform in zip(entries, released["platforms"]):
            member = client.get_manifest(released["repository"], entry["digest"])
            assert (entry["mediaType"], entry["size"]) == (manifest_type, member.size)
            fields = entry["platform"]
            assert PLATFORMS[platform].matches(fields["os"], fields["architecture"],
                                               fields.get("variant"))
            assert fields.get("variant") == PLATFORMS[platform].variant  # arm/v7 even when unsaid


def test_the_engine_pulls_each_platforms_image_from_a_tag_and_runs_it(released, build_engine,
                                                                     kind_registry):
    reference = f"{kind_registry.host}/{released['repository']}:latest"
    for name in released["platforms"]:
        platform = PLATFORMS[name]
        build_engine.client.images.pull(reference, platform=platform.oci)
        said = build_engine.client.containers.run(reference, platform=platform.oci, remove=True,
                                                  network_mode="none")
        assert said.decode().startswith(
            f"hello 1.0.0 on {build_args(platform)['TARGETPLATFORM']}, "), (name, said)


def test_a_second_release_builds_and_writes_nothing(released):
    done, report, first = released["second"], released["second_report"], released["report"]

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {job["status"] for job in report["jobs"]} == {"skipped"}
    assert sorted((j["job"], j["digest"]) for j in report["jobs"]) == \
        sorted((j["job"], j["digest"]) for j in first["jobs"])
    assert [(t["tag"], t["status"], t["digest"]) for t in report["tags"]] == \
        [(t["tag"], "unchanged", t["digest"]) for t in first["tags"]]
