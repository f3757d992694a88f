"""Engine pools: scheduling by load, health probes and failover.

The pure parts (`builder.farm.pools`: the scheduler's choice and the verdict on what an engine runs)
are tested on values, Windows facts included: no Windows engine can run here, so those facts
stand in for a Windows engine's `docker version`. The rest uses real engines of the test bed:
the second and third dockerds both serve amd64, and a fourth one, started by each test that
needs it, is killed with SIGKILL in the middle of a build, or of a push.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker.errors
import pytest
import requests

from builder.farm import runner as build
from builder.farm import builders as builders_file
from builder.farm import health
from builder.commands import release
from builder.model import versions
from builder.farm.builders import Engine
from builder.farm.engineapi import StepFailed
from builder.plan.plan import plan
from builder.model.platforms import platform
from builder.farm.pools import Facts, Health, Load, choose, judge
from builder.model.reference import DOCKER_LIST
from builder.registry.client import RegistryClient
from builder.model.tags import tag_groups
from test_plan import derived_family
from testbed.engine import start_second_engine

ROOT = Path(__file__).resolve().parent.parent
AMD64, ARM64, WINDOWS = platform("amd64"), platform("arm64v8"), platform("windows-amd64")
WIN1809 = WINDOWS.with_os_version("10.0.17763")


# --- the scheduler and the verdicts, on values -------------------------------------------------

def test_a_job_goes_to_the_free_engine_with_the_least_work():
    loads = [Load("a", 1, 1, 1), Load("b", 1, 2, 3), Load("c", 0, 2, 5)]
    assert choose(loads) == "c"  # a is full; c is idle although it has taken more jobs
    assert choose([Load("a", 1, 1, 1), Load("b", 1, 1, 0)]) is None  # all full: wait


def test_on_equal_load_the_engine_that_took_fewer_jobs_then_the_first_listed():
    assert choose([Load("a", 0, 1, 2), Load("b", 0, 1, 1)]) == "b"
    assert choose([Load("a", 0, 1, 1), Load("b", 0, 1, 1)]) == "a"


def test_a_job_prefers_its_parents_engine_while_it_has_a_free_slot():
    assert choose([Load("a", 0, 1, 0), Load("b", 1, 2, 4)], prefer="b") == "b"
    assert choose([Load("a", 0, 1, 0), Load("b", 2, 2, 4)], prefer="b") == "a"


def test_an_engine_is_judged_by_what_it_runs():
    engine = Engine("x", "unix:///x.sock", (AMD64, ARM64, WIN1809), os_version="10.0.17763")
    refused, foreign = judge(engine, Facts("linux", "amd64"))
    assert refused == {"windows-amd64": "listed for windows-amd64 (10.0.17763), but it runs "
                                        "linux containers (linux/amd64)"}
    assert foreign == (ARM64,)  # to be proved by a container


def test_a_windows_engine_runs_only_its_own_os_version_line():
    # Stand-in facts: a Windows engine's answers, as no Windows engine can run here.
    engine = Engine("win", "ssh://win", (WIN1809,), os_version="10.0.17763")
    assert judge(engine, Facts("windows", "amd64", "10.0.17763")) == ({}, ())
    refused, _ = judge(engine, Facts("windows", "amd64", "10.0.20348"))
    assert refused == {"windows-amd64": "listed for windows-amd64 (10.0.17763), but it runs "
                                        "Windows 10.0.20348"}


def test_what_an_engine_runs_comes_from_its_version_and_info_answers():
    assert Facts.from_answers({"Os": "linux", "Arch": "arm64"}, {}) == Facts("linux", "arm64")
    assert Facts.from_answers({}, {"OSType": "linux", "Architecture": "x86_64"}) == \
        Facts("linux", "amd64")
    # Stand-in answers of a Windows Server 2019 engine (none can run here).
    kernel = {"OSType": "windows", "KernelVersion": "10.0 17763 (17763.1.amd64fre.rs5_release.180914-1434)"}
    assert Facts.from_answers({"Os": "windows", "Arch": "amd64"}, kernel) == \
        Facts("windows", "amd64", "10.0.17763")
    assert Facts.from_answers({"Os": "windows", "Arch": "amd64"},
                              {"OSVersion": "10.0.20348.2340"}).os_version == "10.0.20348"


def test_health_says_why_a_platform_has_no_engine():
    pool = (Engine("a", "unix:///a", (AMD64,)), Engine("b", "unix:///b", (AMD64,)))
    found = Health({"a": "engine a (unix:///a) is unreachable: refused"},
                   {("b", "amd64"): "it runs linux/arm64"})
    assert not found.usable("a", "amd64") and not found.usable("b", "amd64")
    assert found.usable("b", "i386")
    assert found.no_engine_reason(AMD64, pool) == (
        "no healthy engine for amd64: engine a (unix:///a) is unreachable: refused; "
        "engine b: it runs linux/arm64")
    assert found.lines() == ["left out: engine a (unix:///a) is unreachable: refused",
                             "engine b not used for amd64: it runs linux/arm64"]


def test_a_failed_step_is_never_the_engines_going_away():
    nowhere = Engine("gone", "unix:///nonexistent/docker.sock", (AMD64,))
    failed = StepFailed("step 3/4 failed with exit code 3", step="step 3/4", exit_code=3)
    assert health.unreachable(nowhere, failed) is None
    try:
        try:
            raise requests.ConnectionError("Connection reset by peer")
        except requests.ConnectionError:
            raise build.BuilderError("engine gone failed during the build") from None
    except build.BuilderError as error:
        gone = health.unreachable(nowhere, error)
    assert gone is not None and not gone.answers and "Connection reset by peer" in str(gone)


def test_the_builders_file_caps_pushes_and_the_plan_shows_each_pool(tmp_path, tiny_family_path):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n"
                    "  - {name: a, url: 'unix:///a.sock', platforms: [amd64], concurrency: 3,"
                    " push-concurrency: 1}\n"
                    "  - {name: b, url: 'unix:///b.sock', platforms: [amd64, arm64v8]}\n")
    loaded = builders_file.parse(path)
    assert [(e.concurrency, e.pushes) for e in loaded.engines] == [(3, 1), (1, 1)]

    the_plan = plan(versions.load(tiny_family_path), "1.0.0", ("busybox",), ("amd64", "arm64v8"),
                    builders=loaded)

    assert [j.pool for j in the_plan.jobs] == [("a", "b"), ("b",)]
    text = the_plan.describe()
    assert "  pool amd64: a (3 at once, 1 push at once), b (1 at once)" in text
    assert "  pool arm64v8: b (1 at once)" in text


def test_push_concurrency_must_be_positive(tmp_path):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n  - {name: a, url: 'unix:///a.sock', platforms: [amd64],"
                    " push-concurrency: 0}\n")
    with pytest.raises(builders_file.InputError) as caught:
        builders_file.parse(path)
    assert f"{path}:2: engines[0].push-concurrency: " in str(caught.value)


# --- real engines -------------------------------------------------------------------------------

def tiny_copy(directory: Path, tiny_family_path: Path, repository: str, *,
              extra_run: str | None = None, generate: bool = False) -> Path:
    """The tiny family as `repository` in `directory`, its busybox template given one more RUN
    step; with `generate`, its Dockerfile tree written there as a project commits it."""
    shutil.copytree(tiny_family_path.parent, directory)
    path = directory / "versions.yaml"
    path.write_text(path.read_text().replace("repository: tiny\n", f"repository: {repository}\n"))
    if extra_run:
        template = directory / "templates" / "busybox.Dockerfile.j2"
        template.write_text(template.read_text().replace('CMD ["sh"]', f'RUN {extra_run}\nCMD ["sh"]'))
    if generate:
        done = subprocess.run([str(Path(sys.executable).parent / "invoke"), "generate",
                               "--versions", str(path)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    return path


def write_builders(path: Path, mirror_host: str, *engines: str) -> Path:
    """`engines`: each an entry's YAML flow mapping."""
    path.write_text(f"base-mirror: {mirror_host}\nengines:\n"
                    + "".join(f"  - {entry}\n" for entry in engines))
    return path


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
        versions=str(tiny_copy(tmp_path / "tiny", tiny_family_path, "tiny-pools")),
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
        versions=str(tiny_copy(tmp_path / "tiny", tiny_family_path, "tiny-pools-fail",
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
        versions=str(tiny_copy(tmp_path / "tiny", tiny_family_path, "tiny-pools-liar")),
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

    found = health.check([engine], {"third": engine.platforms}, lambda p: health.ProbeImage(images[p.name], None))

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
    versions_path = tiny_copy(tmp_path / "tiny", tiny_family_path, "tiny-pools-kill",
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
            versions=str(tiny_copy(tmp_path / "tiny", tiny_family_path, "tiny-pools-push",
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
