"""Interruption: real `invoke` processes, real signals, the real engine.

A pull is made slow or endless by serving the base image's layer from a stub registry
(testbed.stubregistry: no real registry serves a blob at a pace we choose). Between steps
(a RUN step killed on its engine) is test_build's test_ctrl_c_stops_the_build_…. On each engine
kind (fixture build_engine): the containerd store pulls through containerd.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testbed.stubregistry import StubRegistry
from tests.helpers.builders import LOCAL_URL, EngineSpec, write_builders
from tests.helpers.cli import generate
from tests.helpers.paths import INVOKE, ROOT

# The stub's address: the modern engine reaches the host's 127.0.0.1 only (testbed/loopback.py).
LOOPBACK = "127.0.0.1"


def slow_family(tmp_path: Path, stub: StubRegistry, repository: str) -> Path:
    """One amd64 variant FROM a fresh image on the stub (a layer no engine has: it is pulled)."""
    stub.add_image("slow/base", "latest", {"payload": os.urandom(2 << 20)})
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "slow.Dockerfile.j2").write_text(
        'FROM {{ variant.base_image }}\nCMD ["/payload"]\n')
    family = tmp_path / "versions.yaml"
    family.write_text(f"repository: {repository}\nvariants:\n  slow:\n    template: slow\n"
                      f"    from: {stub.host}/slow/base:latest\n    platforms: [amd64]\n"
                      "versions:\n  - version: 1.0.0\n    variants: [slow]\n")
    return family


def builders(tmp_path: Path, mirror_host: str, engine: EngineSpec) -> Path:
    return write_builders(tmp_path / "builders.yaml", mirror_host, engine)


def start(command: list[str], stderr: Path) -> subprocess.Popen:
    with stderr.open("w") as errors:
        return subprocess.Popen([INVOKE, *command], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=errors, text=True)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    """Poll until `condition()`; the bound is a guard against a hang, not a timing assertion."""
    for _ in range(3000):
        if condition():
            return
        assert process.poll() is None, f"exited ({process.returncode}) before {what}"
        time.sleep(0.1)
    pytest.fail(f"never: {what}")


@pytest.mark.parametrize("command, stop", [("build", signal.SIGTERM), ("release", signal.SIGINT)])
def test_a_signal_during_a_pull_stops_the_job_and_the_report_names_the_stage(
        tmp_path, kind_registry, mirror, build_engine, command, stop):
    with StubRegistry(LOOPBACK, pace="trickle", challenge=False) as stub:
        family = slow_family(tmp_path, stub, f"tiny-pull-{command}")
        if command == "release":  # its generate --check wants the committed tree
            generate(family)
        log = tmp_path / "logs" / "1.0.0" / "slow" / "amd64.log"
        report = tmp_path / "report.json"
        extra = ["--push"] if command == "build" else []
        running = start([command, "--version", "1.0.0", *extra, "--registry", kind_registry.host,
                         "--builders", str(builders(tmp_path, mirror.host, build_engine.spec("amd64"))),
                         "--versions", str(family), "--logs", str(tmp_path / "logs"),
                         "--report", str(report)], tmp_path / "stderr")
        try:
            wait_for(lambda: log.exists() and " Downloading" in log.read_text(), running,
                     "the pull shows progress")
            running.send_signal(stop)
            running.wait(timeout=300)
        finally:
            running.kill()
        served = len(stub.blob_requests())

    stderr = (tmp_path / "stderr").read_text()
    assert running.returncode == 130, stderr
    assert f"{stop.name}: stopping the running jobs; a second signal exits at once" in stderr
    assert ("failed: 1.0.0/slow/amd64: interrupted before its pull ended; nothing was built"
            in stderr), stderr
    assert "Traceback" not in stderr and served >= 1
    written = json.loads(report.read_text())
    assert (written["command"], written["exit_code"], written["stopped_at"]) == (command, 130, "build")
    assert written["stages"]["build"]["status"] == "failed"
    assert written["stages"]["build"]["reason"] == "interrupted"
    [job] = written["jobs"]
    assert job["status"] == "failed" and job["pushed"] == []
    assert job["reason"] == "1.0.0/slow/amd64: interrupted before its pull ended; nothing was built"
    if command == "release":
        assert "publish" not in written["stages"]


def test_a_second_signal_exits_at_once_while_the_first_waits_for_a_stuck_pull(
        tmp_path, registry, mirror):
    """On the host's engine only: the containerd store reports progress every few seconds even
    on a stalled blob, so there the first signal ends the job by itself."""
    with StubRegistry(LOOPBACK, pace="stall", challenge=False) as stub:
        family = slow_family(tmp_path, stub, "tiny-stuck")
        running = start(["build", "--version", "1.0.0", "--push", "--registry", registry.host,
                         "--builders", str(builders(tmp_path, mirror.host, ("local", LOCAL_URL, ("amd64",)))),
                         "--versions", str(family), "--logs", str(tmp_path / "logs"),
                         "--report", str(tmp_path / "report.json")], tmp_path / "stderr")
        stderr = tmp_path / "stderr"
        try:
            wait_for(lambda: any("docker/" in s.user_agent for s in stub.blob_requests()),
                     running, "the engine asks for a blob")
            running.send_signal(signal.SIGINT)
            # The job's thread waits on the engine, and the engine on the stuck blob: the run
            # cannot end on its own, so whatever ends it now is the second signal.
            wait_for(lambda: "SIGINT: stopping the running jobs" in stderr.read_text(), running,
                     "the first signal is taken")
            running.send_signal(signal.SIGINT)
            running.wait(timeout=300)
        finally:
            running.kill()

    assert running.returncode == 130, stderr.read_text()
    assert stderr.read_text().endswith("SIGINT again: exiting at once\n"), stderr.read_text()
