"""`invoke registry`: a local registry that outlives the command, found again, stopped by PID.

The task keeps its state (config, storage, log, PID file) in .cache/registry under the working
directory, so each test runs invoke from a temporary directory (`--search-root` finds
tasks.py) and never touches the project's own .cache. Whatever a test starts, it stops.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from builder.mirror import localregistry
from builder.model.platforms import PLATFORMS
from builder.registry.client import RegistryClient
from testbed import procs
from tests.helpers.windows_images import push_image
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT


def registry_task(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return invoke("--search-root", str(ROOT), "registry", *args, cwd=cwd, timeout=120)


@pytest.fixture
def state(tmp_path):
    """The task's state directory for a run from tmp_path; stops what is left running there."""
    state = tmp_path / ".cache" / "registry"
    yield state
    pid_file = state / "registry.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if localregistry._ours(pid, state.resolve()):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while procs.alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def test_the_registry_outlives_the_task_is_found_again_and_stops_by_pid(tmp_path, state):
    port = procs.free_port()
    host = f"127.0.0.1:{port}"

    started = registry_task(tmp_path, "--port", str(port))

    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((state / "registry.pid").read_text())
    assert f"registry started on {host} (pid {pid}, storage {state.resolve() / 'storage'}" \
        in started.stdout
    # The task has exited; the registry it started still serves, and takes what a release
    # pushes, Windows foreign layers included.
    assert procs.alive(pid) and localregistry.answers(f"http://{host}")
    client = RegistryClient(host)
    windows = PLATFORMS["windows-amd64"].with_os_version("10.0.17763")
    pushed = push_image(client, "tiny", "1.0.0-windowsservercore-1809-windows-amd64", windows)
    assert client.head_manifest("tiny", "1.0.0-windowsservercore-1809-windows-amd64").digest == \
        pushed.digest

    again = registry_task(tmp_path, "--port", str(port))

    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == f"a registry already answers on {host}; using it\n"
    assert int((state / "registry.pid").read_text()) == pid

    stopped = registry_task(tmp_path, "--stop")

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout == f"stopped the registry (pid {pid})\n"
    assert not procs.alive(pid)  # stop waits until it has exited
    assert not localregistry.answers(f"http://{host}")
    assert not (state / "registry.pid").exists()
    assert registry_task(tmp_path, "--stop").stdout == f"no registry started from {state.resolve()}\n"

    # Started again, it serves what the first one stored.
    restarted = registry_task(tmp_path, "--port", str(port))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert client.head_manifest("tiny", "1.0.0-windowsservercore-1809-windows-amd64").digest == \
        pushed.digest
    assert registry_task(tmp_path, "--stop").returncode == 0


def test_a_second_registry_from_the_same_state_directory_is_refused(tmp_path, state):
    first_port = procs.free_port()
    assert registry_task(tmp_path, "--port", str(first_port)).returncode == 0
    second_port = procs.free_port()
    pid = int((state / "registry.pid").read_text())

    second = registry_task(tmp_path, "--port", str(second_port))

    assert second.returncode == 2
    assert second.stderr == (f"error: port: the registry started from {state.resolve()} still "
                             f"runs (pid {pid}) on another port; stop it first: invoke registry --stop\n")
    assert int((state / "registry.pid").read_text()) == pid
    assert not localregistry.answers(f"http://127.0.0.1:{second_port}")


def test_a_port_taken_by_something_else_fails_and_leaves_nothing_running(tmp_path, state):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        done = registry_task(tmp_path, "--port", str(port))

    assert done.returncode == 1
    assert done.stderr.startswith(f"error: the registry on 127.0.0.1:{port} did not come up; see ")
    assert "address already in use" in done.stderr
    assert not (state / "registry.pid").exists()


def test_stop_leaves_a_pid_that_is_not_its_registry_alone(tmp_path):
    """A stale PID file whose PID now runs something else: nothing is signalled."""
    state = tmp_path / "state"
    state.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (state / "registry.pid").write_text(f"{sleeper.pid}\n")

        localregistry.stop(state)

        assert sleeper.poll() is None
        assert not (state / "registry.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
