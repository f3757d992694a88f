"""The BuildKit backend on the test bed's modern engine (Docker 28.5, containerd image store):
`builder:` in the builders file, the probe's store and builder per platform, and releases of
the example family (examples/hello) whose tags the registry serves at the digests reported.

The tool finds sid's buildx (testbed.modern.buildx_binary) on PATH, as a pipeline's runner finds
its docker-buildx; the host's docker CLI keeps no buildx plugin (docs/design/testbed-modern.md).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from builder.mirror import serve
from builder.plan.identity import HASH_LABEL
from builder.registry.client import RegistryClient
from testbed import modern
from testbed.engine import remove_tags_of
from testbed.procs import free_port
from testbed.registry import start_registry
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT
from tests.helpers.families import broken_family

HELLO = ROOT / "examples" / "hello" / "versions.yaml"
PLATFORMS = ("amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x")


def with_buildx() -> dict:
    return {"PATH": f"{modern.buildx_binary().parent}:{os.environ['PATH']}"}


def without_buildx(tmp_path: Path) -> dict:
    """No docker-buildx on PATH, and a home whose ~/.docker holds no CLI plugin."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}


def engine_entry(url: str, platforms: tuple[str, ...], builder: str | None) -> str:
    chosen = f", builder: {builder}" if builder else ""
    return f"{{name: modern, url: '{url}', platforms: [{', '.join(platforms)}]{chosen}}}"


@pytest.fixture
def own_registry(tmp_path):
    """A registry of this test alone: every tag there is this test's push."""
    registry = start_registry(tmp_path / "registry", name="buildkit")
    yield registry
    registry.stop()


def config_of(registry, repository: str, digest: str) -> dict:
    client = RegistryClient(registry.host)
    return client.get_config(repository, client.get_manifest(repository, digest))


def build(tmp_path, builders, registry, *platforms: str, env: dict, variant: str = "busybox"):
    args = ["build", "--versions", str(HELLO), "--version", "1.0.0", "--variant", variant,
            "--builders", str(builders), "--logs", str(tmp_path / "logs"),
            "--report", str(tmp_path / "build.json")]
    for name in platforms:
        args += ["--platform", name]
    if registry is not None:
        args += ["--push", "--registry", registry.host, "--force"]
    return invoke(*args, env=env)


def test_hello_releases_on_the_containerd_store_with_buildkit_for_arm32v5(
        tmp_path, modern_engine, mirror, own_registry):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              engine_entry(modern_engine.url, PLATFORMS, None))

    done = invoke("release", "--versions", str(HELLO), "--version", "1.0.0",
                  "--registry", own_registry.host, "--builders", str(builders),
                  "--logs", str(tmp_path / "logs"), "--report", str(tmp_path / "release.json"),
                  "--out", str(tmp_path / "out"), env=with_buildx())

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert ("containerd image store (overlayfs); builds with classic: amd64, arm32v7, arm64v8, "
            "i386, ppc64le, s390x; with buildkit: arm32v5") in output
    jobs = [j for j in json.loads((tmp_path / "release.json").read_text())["jobs"] if "digest" in j]
    assert len(jobs) == 14, jobs
    client = RegistryClient(own_registry.host)
    for job in jobs:
        assert job["builder"] == ("buildkit" if job["platform"] == "arm32v5" else "classic"), job
        tag = job["image"].rsplit(":", 1)[1]
        held = client.head_manifest("hello", tag)
        assert held and held.digest == job["digest"], job
        config = config_of(own_registry, "hello", job["digest"])
        if job["platform"] == "arm32v5":
            # What the classic builder on this store leaves out.
            assert (config["architecture"], config.get("variant")) == ("arm", "v5")
        assert config["config"]["Labels"][HASH_LABEL] == job["build_hash"], job


def test_classic_on_the_containerd_store_refuses_arm32v5_naming_the_cause(
        tmp_path, modern_engine, mirror):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              engine_entry(modern_engine.url, ("amd64", "arm32v5"), "classic"))

    done = build(tmp_path, builders, None, "arm32v5", env=with_buildx())

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "would drop the variant v5 of linux/arm/v5 (moby#47823); set `builder: buildkit`" \
        in output, output
    assert "--no-cache" not in output


def test_buildkit_without_buildx_here_says_what_to_install(tmp_path, modern_engine, mirror):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              engine_entry(modern_engine.url, ("amd64",), "buildkit"))

    done = build(tmp_path, builders, None, "amd64", env=without_buildx(tmp_path))

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "it builds amd64 with BuildKit (`builder: buildkit` in the builders file), and no " \
        "docker-buildx on PATH nor among the docker CLI plugins" in output, output
    assert "apt-get install docker-buildx" in output


def test_builder_buildkit_builds_smoke_tests_and_pushes_every_job(
        tmp_path, modern_engine, mirror, own_registry):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              engine_entry(modern_engine.url, ("amd64", "arm64v8"), "buildkit"))

    done = build(tmp_path, builders, own_registry, "amd64", "arm64v8", env=with_buildx())

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "builds with buildkit: amd64, arm64v8" in output
    jobs = {j["platform"]: j for j in json.loads((tmp_path / "build.json").read_text())["jobs"]}
    for platform, machine in (("amd64", "x86_64"), ("arm64v8", "aarch64")):
        job = jobs[platform]
        held = RegistryClient(own_registry.host).head_manifest("hello", f"1.0.0-busybox-{platform}")
        assert job["builder"] == "buildkit" and held and held.digest == job["digest"], job
        log = Path(job["log"]).read_text()
        # The RUN step's own output, read from BuildKit's progress, is in the job's log.
        assert f"hello 1.0.0 on linux/{'amd64' if platform == 'amd64' else 'arm64'}, {machine}" \
            in log, log[-2000:]
        assert "buildkit builder" in log


def test_a_failing_run_step_under_buildkit_fails_its_job_naming_the_step(
        tmp_path, modern_engine, mirror, own_registry, tiny_family_path):
    family = broken_family(tmp_path, tiny_family_path)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              engine_entry(modern_engine.url, ("amd64",), "buildkit"))

    done = invoke("build", "--version", "1.0.0", "--variant", "broken", "--variant", "busybox",
                  "--platform", "amd64", "--push", "--registry", own_registry.host,
                  "--builders", str(builders), "--versions", str(family),
                  "--logs", str(tmp_path / "logs"), env=with_buildx())

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    # BuildKit numbers the steps it runs (FROM and RUN here; not ENV or CMD, nor the LABEL step
    # the classic builder appends for the build-hash label).
    assert ("failed: 1.0.0/broken/amd64: step 2/2 (RUN echo about to fail && exit 3) failed "
            "with exit code 3 on engine modern (BuildKit): the command did not complete "
            "successfully: exit code: 3") in done.stderr, done.stderr
    client = RegistryClient(own_registry.host)
    assert client.head_manifest("tiny-broken", "1.0.0-broken-amd64") is None
    assert client.head_manifest("tiny-broken", "1.0.0-busybox-amd64") is not None
    log = (tmp_path / "logs" / "1.0.0" / "broken" / "amd64.log").read_text()
    assert "about to fail" in log and "FAILED: 1.0.0/broken/amd64" in log


def test_plan_probe_shows_each_engines_store_and_builder(tmp_path, modern_engine, mirror):
    builders = write_builders(
        tmp_path / "builders.yaml", mirror.host,
        engine_entry(modern_engine.url, ("amd64", "arm32v5"), None),
        "{name: host, url: 'unix:///var/run/docker.sock', platforms: [amd64, arm32v5]}")

    done = invoke("plan", "--versions", str(HELLO), "--version", "1.0.0", "--variant", "busybox",
                  "--builders", str(builders), "--probe", env=with_buildx())
    as_json = invoke("plan", "--versions", str(HELLO), "--version", "1.0.0", "--variant", "busybox",
                     "--builders", str(builders), "--probe", "--format", "json", env=with_buildx())

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("engine modern: Docker 28.") and line.endswith(
        "containerd image store (overlayfs); builds with classic: amd64; with buildkit: arm32v5")
        for line in lines), done.stdout
    assert any(line.startswith("engine host: Docker 20.10") and line.endswith(
        "graphdriver store (overlay2); builds with classic: amd64, arm32v5")
        for line in lines), done.stdout
    probed = json.loads(as_json.stdout)["engines"]["probed"]
    assert probed["modern"]["containerd"] and not probed["host"]["containerd"]
    assert probed["modern"]["builders"] == {"amd64": "classic", "arm32v5": "buildkit"}


def test_builder_buildkit_on_the_hosts_graphdriver_store(tmp_path, docker_client, mirror,
                                                         own_registry):
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              "{name: host, url: 'unix:///var/run/docker.sock', "
                              "platforms: [amd64, arm32v5], builder: buildkit}")
    try:
        done = build(tmp_path, builders, own_registry, "amd64", "arm32v5", env=with_buildx())
    finally:
        remove_tags_of(docker_client, own_registry.host)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "graphdriver store (overlay2); builds with buildkit: amd64, arm32v5" in output
    jobs = {j["platform"]: j for j in json.loads((tmp_path / "build.json").read_text())["jobs"]}
    for platform in ("amd64", "arm32v5"):
        held = RegistryClient(own_registry.host).head_manifest("hello", f"1.0.0-busybox-{platform}")
        assert held and held.digest == jobs[platform]["digest"], jobs[platform]
    config = config_of(own_registry, "hello", jobs["arm32v5"]["digest"])
    assert (config["architecture"], config.get("variant")) == ("arm", "v5")


def test_buildkit_fetches_through_a_loopback_source_mirror(tmp_path, modern_engine, mirror,
                                                           own_registry, tiny_family_path):
    """As the real CPython build fetches its tarball: the RUN step on the engine's host network,
    whose loopback reaches the host's (docs/design/testbed-modern.md)."""
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "busybox.Dockerfile.j2").write_text(
        "FROM {{ variant.base_image }}\nRUN wget -q -O /fetched.txt "
        "https://www.python.org/ftp/python/9.9.9/notes.txt && grep -qx 'served' /fetched.txt\n")
    family = tmp_path / "versions.yaml"
    family.write_text(tiny_family_path.read_text())
    tree = tmp_path / "mirror"
    (tree / "python" / "9.9.9").mkdir(parents=True)
    (tree / "python" / "9.9.9" / "notes.txt").write_text("served\n")
    url = serve.start(tree, free_port())
    try:
        builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                                  engine_entry(modern_engine.url, ("arm32v5",), "buildkit"))
        builders.write_text(builders.read_text() + (
            "mirrors:\n  - {name: python-org, upstream: 'https://www.python.org/ftp/python/',"
            f" url: '{url}/python/'}}\n"))
        done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "arm32v5",
                      "--push", "--registry", own_registry.host, "--builders", str(builders),
                      "--versions", str(family), "--report", str(tmp_path / "report.json"),
                      "--logs", str(tmp_path / "logs"), env=with_buildx())
    finally:
        serve.stop(tree)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    [job] = json.loads((tmp_path / "report.json").read_text())["jobs"]
    assert (job["status"], job["builder"]) == ("built", "buildkit")
    assert job["mirrors"][0]["url"] == f"{url}/python/"
    assert RegistryClient(own_registry.host).head_manifest("tiny", "1.0.0-busybox-arm32v5")
