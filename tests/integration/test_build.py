"""Build and push on the real engines and registries of the test bed (conftest)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from builder.commands import build
from builder.model import builders as builders_file
from builder.model import versions
from builder.plan.identity import HASH_LABEL
from builder.plan.plan import Plan, plan
from builder.model.platforms import platform
from builder.registry.client import RegistryClient
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from tests.helpers.families import broken_family, derived_family
from tests.helpers.paths import ROOT, TINY_FAMILY

LOCAL = ("amd64", "arm32v7")
SECOND = ("arm64v8", "ppc64le", "s390x")
# What `uname -m` says in each platform's container (QEMU user mode for the foreign ones).
UNAME = {"amd64": "x86_64", "arm32v7": "armv7l", "arm64v8": "aarch64", "ppc64le": "ppc64le",
         "s390x": "s390x"}


def blob_count(storage: Path) -> int:
    return sum(1 for _ in storage.rglob("data"))


@pytest.fixture(scope="module")
def two_engines(tmp_path_factory, registry, mirror, second_engine):
    """The tiny family's two Linux variants × 5 platforms, split over two engines, pushed."""
    work = tmp_path_factory.mktemp("two-engines")
    builders = write_builders(work / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", LOCAL),
                              ("second", second_engine.url, SECOND))
    kwargs = dict(variants=("busybox", "slim-busybox"), platforms=LOCAL + SECOND,
                  registry=registry.host, push=True, builders=str(builders),
                  versions=str(TINY_FAMILY), logs=str(work / "logs"))
    first = build.run(build.BuildOptions("1.0.0", **kwargs), out=io.StringIO())
    blobs = blob_count(registry.storage)
    second_out = io.StringIO()
    second = build.run(build.BuildOptions("1.0.0", **kwargs), out=second_out)
    return first, blobs, second, second_out.getvalue()


def test_two_engines_build_and_push_every_platform(two_engines, registry, docker_client):
    first, _, _, _ = two_engines

    assert first.exit_code == 0, [r.reason for r in first.failures]
    assert len(first.results) == 10
    client = RegistryClient(registry.host)
    for result in first.results:
        job = result.pushed.job
        assert result.status == "built" and result.engine == ("local" if job.platform.name in LOCAL
                                                              else "second")
        manifest = client.get_manifest(job.image.repository, job.image.tag)
        assert manifest.digest == result.digest == result.pushed.digest
        config = client.get_config(job.image.repository, manifest)
        assert job.platform.matches(config["os"], config["architecture"], config.get("variant"))
        assert config["config"]["Labels"][HASH_LABEL] == result.build_hash
        ran = docker_client.containers.run(
            f"{job.image.registry}/{job.image.repository}@{result.digest}",
            ["sh", "-c", "uname -m; cat /tiny-release"], remove=True, platform=job.platform.oci)
        machine, release = ran.decode().splitlines()
        assert machine == UNAME[job.platform.name]
        target = job.build_args["TARGETPLATFORM"]
        assert release == (f"1.0.0 {target} {machine}" if job.variant.name == "busybox"
                           else f"1.0.0 slim {target}")


def test_jobs_on_different_engines_overlap_and_each_engine_keeps_its_limit(two_engines):
    first, _, _, _ = two_engines
    spans = {name: [(r.started, r.finished) for r in first.results if r.engine == name]
             for name in ("local", "second")}

    def overlap(a, b):
        return a[0] < b[1] and b[0] < a[1]

    assert any(overlap(a, b) for a in spans["local"] for b in spans["second"])
    for name, intervals in spans.items():  # concurrency 1: one build at a time per engine
        ordered = sorted(intervals)
        assert all(x[1] <= y[0] for x, y in zip(ordered, ordered[1:])), name


def test_a_second_run_builds_and_uploads_nothing_and_says_why(two_engines, registry):
    first, blobs, second, output = two_engines

    assert second.exit_code == 0
    assert [r.status for r in second.results] == ["skipped"] * 10
    assert blob_count(registry.storage) == blobs
    by_key = {r.key: r for r in first.results}
    for result in second.results:
        assert result.pushed is None and result.started is None
        assert result.digest == by_key[result.key].digest
        assert result.reason == (f"unchanged: {result.image} has build hash "
                                 f"{by_key[result.key].build_hash}")
        assert result.reason in output


def test_a_failing_run_step_fails_its_job_only_and_pushes_nothing_of_it(
        tmp_path, registry, mirror, tiny_family_path):
    family = broken_family(tmp_path, tiny_family_path)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64", "arm64v8")))

    done = invoke("build", "--version", "1.0.0", "--variant", "broken", "--variant", "busybox",
                  "--platform", "amd64", "--push", "--registry", registry.host,
                  "--builders", str(builders), "--versions", str(family),
                  "--logs", str(tmp_path / "logs"), "--report", str(tmp_path / "report.json"))

    assert done.returncode == 1, done.stderr
    # 5 steps: the engine appends a LABEL step for the build-hash label.
    assert ("failed: 1.0.0/broken/amd64: step 3/5 (RUN echo about to fail && exit 3) failed "
            "with exit code 3 on engine local") in done.stderr
    client = RegistryClient(registry.host)
    assert client.head_manifest("tiny-broken", "1.0.0-broken-amd64") is None
    assert client.head_manifest("tiny-broken", "1.0.0-busybox-amd64") is not None
    log = (tmp_path / "logs" / "1.0.0" / "broken" / "amd64.log").read_text()
    assert "about to fail" in log and "FAILED: 1.0.0/broken/amd64" in log
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["command"], report["exit_code"], report["stopped_at"]) == ("build", 1, "build")
    jobs = {job["job"]: job for job in report["jobs"]}
    assert jobs["1.0.0/broken/amd64"]["status"] == "failed"
    assert "exit code 3" in jobs["1.0.0/broken/amd64"]["reason"]
    assert jobs["1.0.0/broken/amd64"]["pushed"] == []
    assert jobs["1.0.0/busybox/amd64"]["status"] == "built"
    assert jobs["1.0.0/busybox/amd64"]["pushed"] == [f"{registry.host}/tiny-broken:1.0.0-busybox-amd64"]


def test_a_registry_refusing_the_credentials_fails_the_job_and_keeps_the_secret(
        tmp_path, tls_registry, mirror, tiny_family_path):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64",)))
    wrong = "not-" + tls_registry.password

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "amd64", "--push",
                  "--registry", tls_registry.host, "--builders", str(builders),
                  "--versions", str(tiny_family_path), "--logs", str(tmp_path / "logs"),
                  env={"BUILDER_REGISTRY_HOST": tls_registry.host,
                       "BUILDER_REGISTRY_USERNAME": tls_registry.username,
                       "BUILDER_REGISTRY_PASSWORD": wrong})

    assert done.returncode == 1, done.stderr
    assert f"failed: 1.0.0/busybox/amd64: registry {tls_registry.host} refused the credentials" \
        in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert wrong not in (tmp_path / "logs" / "1.0.0" / "busybox" / "amd64.log").read_text()
    listed = tls_registry.get("/v2/tiny/tags/list")
    assert listed.status_code == 404 or "1.0.0-busybox-amd64" not in listed.json().get("tags", [])


def test_an_engine_that_is_down_skips_its_jobs_with_exit_1(tmp_path, registry, mirror,
                                                           tiny_family_path):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("dead", f"unix://{tmp_path}/dead.sock", ("amd64",)))

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "amd64",
                  "--builders", str(builders), "--versions", str(tiny_family_path),
                  "--logs", str(tmp_path / "logs"))

    assert done.returncode == 1
    assert f"left out: engine dead (unix://{tmp_path}/dead.sock) is unreachable: " in done.stdout
    assert (f"skipped: 1.0.0/busybox/amd64: no healthy engine for amd64: engine dead "
            f"(unix://{tmp_path}/dead.sock) is unreachable: ") in done.stderr


def test_the_platform_guard_catches_the_classic_builders_cross_platform_cache(
        tmp_path, docker_client, tiny_family_path):
    """FROM scratch with an arch-independent first step: the classic builder's cache hands the
    amd64 image to the arm64 build (docs/classic-builder.md, trap 1); the check after the build
    fails it."""
    family = versions.load(tiny_family_path)
    builders = builders_file.Builders((builders_file.Engine(
        "local", "unix:///var/run/docker.sock", (platform("amd64"), platform("arm64v8"))),))
    base = plan(family, "1.0.0", ("busybox",), ("amd64", "arm64v8"), builders=builders)
    # A stamp of its own, so that only this test's amd64 build can be in the cache; the
    # context is the Dockerfile alone, so that is what the COPY takes.
    scratch = f"FROM scratch\n# stamp {uuid.uuid4().hex}\nCOPY Dockerfile /stamp\n"
    jobs = tuple(dataclasses.replace(j, dockerfile_text=scratch) for j in base.jobs)
    arm64_tag = str(jobs[1].image)
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(arm64_tag)

    results = [build.run_plan(Plan(family, base.version, (job,), (), builders, None),
                         logs=tmp_path / "logs", out=io.StringIO()).results[0]
               for job in jobs]

    assert results[0].status == "built"
    assert results[1].status == "failed"
    assert results[1].reason.startswith("1.0.0/busybox/arm64v8: engine local returned a "
                                        "linux/amd64 image")
    assert "--no-cache" in results[1].reason
    with pytest.raises(docker.errors.ImageNotFound):  # the wrong image was not tagged
        docker_client.images.get(arm64_tag)

    rebuilt = build.run_plan(Plan(family, base.version, (jobs[1],), (), builders, None),
                        nocache=True, logs=tmp_path / "logs", out=io.StringIO()).results[0]
    assert rebuilt.status == "built", rebuilt.reason
    assert docker_client.images.get(arm64_tag).attrs["Architecture"] == "arm64"
    for job in jobs:
        docker_client.images.remove(str(job.image))


@pytest.mark.parametrize("push", [False, True], ids=["local", "pushed"])
def test_a_variant_built_from_another_uses_the_image_just_built(tmp_path, registry, mirror,
                                                                 docker_client, tiny_family_path,
                                                                 push):
    family_path = derived_family(tmp_path, tiny_family_path, f"tiny-derived-{push}".lower(),
                                 "amd64")
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64",)))

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("onbuild", "busybox"), platforms=("amd64",),
        registry=registry.host if push else None, push=push,
        builders=str(builders), versions=str(family_path),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    assert run.exit_code == 0, [r.reason for r in run.failures]
    parent, child = run.results
    assert (parent.key, child.key) == ("1.0.0/busybox/amd64", "1.0.0/onbuild/amd64")
    log = child.log.read_text()
    pinned = (f"FROM {registry.host}/tiny-derived-true@{parent.digest}" if push
              else f"FROM {parent.image_id}")
    assert pinned + "\n" in log
    parent_layers = docker_client.images.get(parent.image_id).attrs["RootFS"]["Layers"]
    child_layers = docker_client.images.get(child.image_id).attrs["RootFS"]["Layers"]
    assert child_layers[:len(parent_layers)] == parent_layers
    for result in (child, parent):
        docker_client.images.remove(result.image)


def test_force_builds_and_pushes_again_what_is_unchanged(tmp_path, registry, mirror,
                                                         tiny_family_path):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("arm32v5",)))

    def once(force: bool):
        return build.run(build.BuildOptions(
            "0.9.1", variants=("busybox",), platforms=("arm32v5",),
            registry=registry.host, push=True, force=force,
            builders=str(builders), versions=str(tiny_family_path),
            logs=str(tmp_path / "logs")), out=io.StringIO()).results[0]

    first, again, forced = once(False), once(False), once(True)

    assert (first.status, again.status, forced.status) == ("built", "skipped", "built")
    assert forced.pushed is not None and forced.digest == first.digest  # same layers, from cache


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_build_kills_the_running_step_and_pushes_nothing(
        tmp_path, registry, mirror, docker_client, stop):
    family = tmp_path / "versions.yaml"
    family.write_text("repository: tiny-interrupted\nvariants:\n  busybox:\n    template: slow\n"
                      "    from: busybox:latest\n    platforms: [amd64, arm64v8]\n"
                      "versions:\n  - version: 1.0.0\n    variants: [busybox]\n")
    (tmp_path / "templates").mkdir()
    # A step that outlives any test unless it is stopped: the run must not wait for it.
    (tmp_path / "templates" / "slow.Dockerfile.j2").write_text(
        'FROM {{ variant.base_image }}\nRUN echo started && sleep 600\nCMD ["sh"]\n')
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64", "arm64v8")))
    logs = {name: tmp_path / "logs" / "1.0.0" / "busybox" / f"{name}.log"
            for name in ("amd64", "arm64v8")}
    running = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoke"), "build", "--version", "1.0.0", "--push",
         "--registry", registry.host, "--builders", str(builders), "--versions", str(family),
         "--logs", str(tmp_path / "logs"), "--no-cache"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def started() -> str | None:
        """The job whose RUN step runs (the engine builds one at a time, either may be first)."""
        for name, log in logs.items():
            if "---> Running in" in (log.read_text() if log.exists() else ""):
                return name
        return None

    try:
        for _ in range(1200):  # the logs are line-buffered: the step shows up as it starts
            if started():
                break
            assert running.poll() is None, running.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("no RUN step ever started")
        first = started()
        running.send_signal(stop)
        stdout, stderr = running.communicate(timeout=300)
    finally:
        running.kill()

    second = "arm64v8" if first == "amd64" else "amd64"
    assert running.returncode == 130, stdout + stderr
    assert (f"failed: 1.0.0/busybox/{first}: interrupted: step 2/4 (RUN echo started && sleep 600) "
            "failed with exit code 137") in stderr
    assert f"failed: 1.0.0/busybox/{second}: interrupted before its build started" in stderr
    container = logs[first].read_text().split("---> Running in ")[1].split()[0]
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container)
    for name in logs:
        assert RegistryClient(registry.host).head_manifest(
            "tiny-interrupted", f"1.0.0-busybox-{name}") is None


def test_a_failure_deep_in_a_long_traced_run_step_names_the_command(tmp_path, registry, mirror,
                                                                   tiny_family_path):
    """A 70-line RUN (as CPython's) is named short; `set -x` says which command in it failed."""
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "busybox.Dockerfile.j2").write_text(
        "FROM {{ variant.base_image }}\n"
        "RUN set -eux; echo one; echo two; " + "true; " * 30 +
        "echo 0000 | sha256sum -c -; echo never\n")
    family = tmp_path / "versions.yaml"
    family.write_text(tiny_family_path.read_text().replace("repository: tiny\n",
                                                           "repository: tiny-traced\n"))
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64",)))

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "amd64",
                  "--builders", str(builders), "--versions", str(family),
                  "--logs", str(tmp_path / "logs"))

    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    assert line.startswith("failed: 1.0.0/busybox/amd64: step 2/3 (RUN set -eux; echo one; "
                           "echo two; true; true; true; true; true; true; tr …) failed with "
                           "exit code 1 at `")
    # The pipeline's two commands trace in either order, and their traces can interleave on
    # one line, even word by word (`sha256sumecho 0000`); either names the check that failed.
    traced = line.split(" at `", 1)[1].split("`", 1)[0]
    assert "sha256sum" in traced or "echo 0000" in traced, line
    assert "The command '" not in line and "echo never" not in line and len(line) < 400
