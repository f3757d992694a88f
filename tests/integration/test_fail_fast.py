"""A registry the run needs that does not answer stops it before anything is built: one line
naming the host and what to check, within seconds, not a retried failure per job."""
from __future__ import annotations

import time

from testbed.procs import free_port
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from tests.helpers.families import tiny_family

LOCAL = ("local", "unix:///var/run/docker.sock", ("amd64", "arm32v5", "arm32v7", "i386"))


def _run(tmp_path, *args: str, mirror_host: str):
    versions_path = tiny_family(tmp_path / "tiny", "tiny-fail-fast", generate=True)
    builders = write_builders(tmp_path / "builders.yaml", mirror_host, LOCAL)
    started = time.monotonic()
    done = invoke(*args, "--version", "1.0.0", "--builders", str(builders), "--versions",
                  str(versions_path), "--logs", str(tmp_path / "logs"),
                  "--report", str(tmp_path / "report.json"), timeout=120)
    return done, time.monotonic() - started


def _errors(done) -> list[str]:
    """stderr without the plan's emulation warning (some of LOCAL's platforms run under QEMU)."""
    return [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]


def _naming(done, host: str) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if host in line]


def test_a_release_to_a_port_where_nothing_listens_stops_at_once(tmp_path, mirror, docker_client):
    dead = f"127.0.0.1:{free_port()}"
    done, seconds = _run(tmp_path, "release", "--registry", dead, "--out", str(tmp_path / "out"),
                         mirror_host=mirror.host)
    assert done.returncode == 4, done.stdout + done.stderr
    assert seconds < 20, f"{seconds:.0f} s"
    [line] = _errors(done)
    assert line.startswith(f"error: registry {dead} (--registry) does not answer: connection "
                           "refused; check that it is up") and line.endswith("nothing was built")
    assert len(_naming(done, dead)) <= 3
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.log"))


def test_a_dead_base_mirror_stops_a_build_at_once(tmp_path, registry, docker_client):
    dead = f"127.0.0.1:{free_port()}"
    done, seconds = _run(tmp_path, "build", "--push", "--registry", registry.host,
                         mirror_host=dead)
    assert done.returncode == 4, done.stdout + done.stderr
    assert seconds < 20, f"{seconds:.0f} s"
    [line] = _errors(done)
    assert f"base mirror {dead} (base-mirror in the builders file or BUILDER_BASE_MIRROR) " \
           "does not answer: connection refused; start it" in line
    assert registry.host not in line  # the registry that answers is not blamed
