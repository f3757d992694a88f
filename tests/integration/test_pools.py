"""Engine pools: scheduling by load, health probes and failover.

The pure parts (`builder.farm.pools`: the scheduler's choice and the verdict on what an engine
runs) are tested on values in tests/unit/test_pools.py. Here, the real engines of the test bed:
the second and third dockerds both serve amd64, and a fourth one, started by each test that
needs it, is killed with SIGKILL in the middle of a build, or of a push.
"""
from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import docker.errors
import pytest

from builder.commands import build
from builder.farm import health
from builder.commands import release
from builder.model import versions
from builder.model.builders import Engine
from builder.model.platforms import platform
from builder.farm.pools import Health
from builder.model.reference import DOCKER_LIST
from builder.registry.client import RegistryClient
from builder.model.tags import tag_groups
from tests.helpers.builders import write_builders
from tests.helpers.families import derived_family, tiny_family
from testbed.engine import start_second_engine

AMD64, ARM64, WINDOWS = platform("amd64"), platform("arm64v8"), platform("windows-amd64")


# --- the scheduler and the verdicts, on values -------------------------------------------------


# --- real engines -------------------------------------------------------------------------------

def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_the_jobs_of_one_platform_split_across_both_amd64_engines(
        tmp_path, registry, mirror, second_engine, third_engine, tiny_family_path):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              f"{{name: second, url: '{second_engine.url}', platforms: [amd64]}}",
                              f"{{name: third, url: '{third_engine.url}', platforms: [amd64]}}")
    out = io.StringIO()

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox", "slim-busybox"), platforms=("amd64",),
        registry=registry.host, push=True, builders=str(builders), force=True, nocache=True,
        versions=str(tiny_family(tmp_path / "tiny", "tiny-pools")),
        logs=str(tmp_path / "logs"), report=str(tmp_path / "report.json")), out=out)

    assert run.exit_code == 0, [r.reason for r in run.failures]
    assert sorted(r.engine for r in run.results) == ["second", "third"]
    first, other = run.results
    assert overlap((first.started, first.finished), (other.started, other.finished))
    report = json.loads((tmp_path / "report.json").read_text())
    assert {j["job"]: j["engine"] for j in report["jobs"]} == {r.key: r.engine for r in run.results}
    assert "failovers" not in report["stages"]["build"]  # none happened
    assert "  pool amd64: second (1 at once), third (1 at once)" in out.getvalue()
    clients = {"second": second_engine.client, "third": third_engine.client}
    for result in run.results:  # each image is on the engine the report names, and only there
        elsewhere = clients["third" if result.engine == "second" else "second"]
        assert str(result.pushed.job.image) in clients[result.engine].images.get(result.image_id).tags
        with pytest.raises(docker.errors.ImageNotFound):
            elsewhere.images.get(result.image_id)


@pytest.mark.parametrize("push", [True, False])
def test_a_variant_built_from_another_goes_to_the_engine_that_built_it(
        push, tmp_path, registry, mirror, second_engine, third_engine, tiny_family_path):
    # third first in the file, second has taken nothing: only the preference sends the child
    # after its parent when that is on second, and the first job goes to third.
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              f"{{name: third, url: '{third_engine.url}', platforms: [amd64]}}",
                              f"{{name: second, url: '{second_engine.url}', platforms: [amd64]}}")

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox", "onbuild"), platforms=("amd64",),
        registry=registry.host if push else None, push=push, builders=str(builders), force=True,
        nocache=True, versions=str(derived_family(tmp_path, tiny_family_path, "tiny-pools-derived",
                                                  platforms="amd64")),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    assert run.exit_code == 0, [r.reason for r in run.failures]
    parent, child = run.results
    assert (parent.key, child.key) == ("1.0.0/busybox/amd64", "1.0.0/onbuild/amd64")
    assert parent.engine == "third" and child.engine == "third"


def test_a_failing_run_step_is_not_retried_on_another_engine(
        tmp_path, registry, mirror, second_engine, third_engine, tiny_family_path):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              f"{{name: second, url: '{second_engine.url}', platforms: [amd64]}}",
                              f"{{name: third, url: '{third_engine.url}', platforms: [amd64]}}")

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox",), platforms=("amd64",), registry=registry.host, push=True,
        builders=str(builders), force=True, nocache=True,
        versions=str(tiny_family(tmp_path / "tiny", "tiny-pools-fail",
                               extra_run="exit 3")),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    [result] = run.results
    assert run.exit_code == 1 and result.status == "failed"
    assert "with exit code 3" in result.reason and result.failovers == []
    log = result.log.read_text()
    assert log.count("--- build on engine") == 1 and "FAILOVER" not in log


def test_an_engine_that_lies_about_its_platform_or_is_gone_is_left_out_saying_why(
        tmp_path, registry, mirror, third_engine, tiny_family_path):
    # The honest lie: QEMU's binfmt handlers are machine-wide here, so every Linux engine really
    # runs every Linux platform; none runs Windows containers.
    builders = write_builders(
        tmp_path / "builders.yaml", mirror.host,
        f"{{name: liar, url: '{third_engine.url}', platforms: [amd64, windows-amd64],"
        " os-version: 10.0.17763}",
        f"{{name: ghost, url: 'unix://{tmp_path}/nobody.sock', platforms: [amd64]}}")
    out = io.StringIO()

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox", "windowsservercore-1809"), registry=registry.host,
        push=True, builders=str(builders), force=True, nocache=True,
        versions=str(tiny_family(tmp_path / "tiny", "tiny-pools-liar")),
        logs=str(tmp_path / "logs"), platforms=("amd64", "windows-amd64")), out=out)

    shown = out.getvalue().splitlines()
    assert ("engine liar not used for windows-amd64: listed for windows-amd64 (10.0.17763), but "
            "it runs linux containers (linux/amd64)") in shown
    [gone] = [line for line in shown if line.startswith("left out: ")]
    assert gone.startswith(f"left out: engine ghost (unix://{tmp_path}/nobody.sock) is "
                           "unreachable: ") and gone.endswith("; start it or fix its url")
    by_key = {r.key: r for r in run.results}
    # Not built for want of a healthy engine: not done, so exit 1, though nothing failed.
    assert run.exit_code == 1 and run.failures == [], [r.reason for r in run.failures]
    assert [r.key for r in run.unserved] == ["1.0.0/windowsservercore-1809/windows-amd64"]
    assert (by_key["1.0.0/busybox/amd64"].status, by_key["1.0.0/busybox/amd64"].engine) == (
        "built", "liar")
    windows = by_key["1.0.0/windowsservercore-1809/windows-amd64"]
    assert windows.status == "skipped"
    assert windows.reason == ("no healthy engine for windows-amd64: engine liar: listed for "
                              "windows-amd64 (10.0.17763), but it runs linux containers "
                              "(linux/amd64)")


def test_an_emulated_platform_is_proved_by_a_container(mirror, third_engine):
    engine = Engine("third", third_engine.url, (ARM64, platform("s390x")))
    images = {p.name: f"{mirror.host}/library/busybox:{p.name}" for p in engine.platforms}

    found = health.check([engine], {"third": engine.platforms},
                         lambda p: health.ProbeImage(images[p.name], RegistryClient(mirror.host)))

    assert found == Health()  # both run under QEMU


@pytest.fixture
def doomed_engine(tmp_path_factory):
    """A dockerd for one test to kill; its teardown cleans up after the kill."""
    engine = start_second_engine(tmp_path_factory.mktemp("doomed"), tls=False, number=4)
    yield engine
    engine.stop()


def wait_for(predicate, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_a_killed_engines_running_job_is_rebuilt_on_the_other_and_the_release_completes(
        tmp_path, registry, mirror, second_engine, doomed_engine, tiny_family_path):
    # A RUN step that lasts, so the daemon is killed while a job is inside it.
    versions_path = tiny_family(tmp_path / "tiny", "tiny-pools-kill",
                              extra_run="sleep 5", generate=True)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              f"{{name: second, url: '{second_engine.url}', platforms: [amd64]}}",
                              f"{{name: doomed, url: '{doomed_engine.url}', platforms: [amd64]}}")
    logs, report_path = tmp_path / "logs", tmp_path / "report.json"
    box = {}

    def target():
        try:
            box["result"] = release.run(release.ReleaseOptions(
                "1.0.0", registry.host, variants=("busybox", "slim-busybox"), platforms=("amd64",),
                builders=str(builders), versions=str(versions_path), out=str(tmp_path / "out"),
                report=str(report_path), force=True, nocache=True, logs=str(logs)),
                out=io.StringIO())
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def doomed_in_sleep() -> bool:
        for log in logs.rglob("amd64.log"):
            text = log.read_text()
            if "--- build on engine doomed" in text and "RUN sleep 5" in text.split(
                    "--- build on engine doomed")[1] and "Running in" in text.split("RUN sleep 5")[-1]:
                return True
        return False

    wait_for(doomed_in_sleep, "a job in its RUN sleep step on engine doomed")
    doomed_engine.kill()
    thread.join(600)
    assert not thread.is_alive() and "error" not in box, box.get("error")

    assert box["result"].exit_code == 0
    report = json.loads(report_path.read_text())
    assert report["exit_code"] == 0 and report["stages"]["build"]["failovers"] == 1
    jobs = {j["job"]: j for j in report["jobs"]}
    assert {j["engine"] for j in jobs.values()} == {"second"}
    [moved] = [j for j in jobs.values() if j["failovers"]]
    [failover] = moved["failovers"]
    assert failover["engine"] == "doomed" and "became unreachable" in failover["cause"]
    assert "FAILOVER" in Path(moved["log"]).read_text()
    # The lists: every tag of the two variants, amd64 only, holds the digest its job pushed.
    family = versions.load(versions_path)
    groups = tag_groups(family, family.version("1.0.0"), ("busybox", "slim-busybox"), (AMD64,))
    client = RegistryClient(registry.host)
    published = {t["tag"] for t in report["tags"]}
    assert published == set(groups)
    for tag, members in groups.items():
        [member] = members
        listed = client.get_manifest("tiny-pools-kill", tag)
        assert listed.media_type == DOCKER_LIST
        assert [m["digest"] for m in listed.json["manifests"]] == [
            jobs[f"1.0.0/{member.name}/amd64"]["digest"]]


def test_a_daemon_killed_mid_push_has_the_job_built_again_elsewhere(
        tmp_path, registry, mirror, second_engine, doomed_engine, tiny_family_path):
    # 128 MB of random bytes: a layer whose push (compressing it) lasts long enough to be cut.
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              f"{{name: doomed, url: '{doomed_engine.url}', platforms: [amd64]}}",
                              f"{{name: second, url: '{second_engine.url}', platforms: [amd64]}}")
    logs, box = tmp_path / "logs", {}

    def target():
        box["run"] = build.run(build.BuildOptions(
            "1.0.0", variants=("busybox",), platforms=("amd64",), registry=registry.host,
            push=True, builders=str(builders), force=True, nocache=True,
            versions=str(tiny_family(tmp_path / "tiny", "tiny-pools-push",
                                   extra_run="head -c 134217728 /dev/urandom > /noise")),
            logs=str(logs)), out=io.StringIO())

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    log = logs / "1.0.0" / "busybox" / "amd64.log"
    wait_for(lambda: log.exists() and "Pushing" in log.read_text().split("tagged ")[-1]
             and "--- build on engine doomed" in log.read_text(), "a push from engine doomed")
    doomed_engine.kill()
    thread.join(600)
    assert not thread.is_alive()

    [result] = box["run"].results
    assert (result.status, result.engine) == ("built", "second"), result.reason
    [failover] = result.failovers
    assert failover.engine == "doomed" and "became unreachable" in failover.cause
    head = RegistryClient(registry.host).head_manifest("tiny-pools-push", "1.0.0-busybox-amd64")
    assert head.digest == result.digest
    assert result.image_id in {i.id for i in second_engine.client.images.list()}
