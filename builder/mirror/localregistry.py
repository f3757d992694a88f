"""A local registry for trying releases out: Debian's Distribution 2.8 on 127.0.0.1.

`invoke registry` starts one (or finds one answering on the port) that outlives the
command, with its storage, log and PID file in one state directory; `--stop` stops it by
that PID. The test bed starts its registries from the same configuration.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import requests
import yaml

from builder.model.errors import BuilderError, InputError

DEFAULT_STATE = Path(".cache/registry")
# Windows base layers are "foreign": they stay on Microsoft's servers and the manifest names
# their URLs. Distribution refuses such manifests unless their URLs are allowed.
FOREIGN_LAYER_URLS = ["^https?://"]


def config(host: str, storage: Path, *, name: str = "registry", tls: tuple[Path, Path] | None = None,
           htpasswd: Path | None = None) -> dict:
    """The registry's configuration: filesystem storage, deletes allowed, foreign layers allowed."""
    document: dict = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": name}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": host, "secret": secrets.token_hex(16),
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "validation": {"manifests": {"urls": {"allow": FOREIGN_LAYER_URLS}}},
    }
    if tls:
        certificate, key = tls
        document["http"]["tls"] = {"certificate": str(certificate), "key": str(key)}
    if htpasswd:
        document["auth"] = {"htpasswd": {"realm": f"{name}-realm", "path": str(htpasswd)}}
    return document


def answers(url: str, verify: str | bool = True) -> bool:
    """Whether a registry answers at `url` (200, or 401 when it wants credentials)."""
    try:
        return requests.get(url + "/v2/", verify=verify, timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def start(port: int, state: Path = DEFAULT_STATE) -> str:
    """Start the registry on 127.0.0.1:`port` unless one answers there; returns the host."""
    host = f"127.0.0.1:{port}"
    if answers(f"http://{host}"):
        print(f"a registry already answers on {host}; using it")
        return host
    binary = shutil.which("docker-registry")
    if not binary:
        raise InputError("docker-registry is not installed: run scripts/setup "
                         "(or apt-get install docker-registry)", field="registry")
    state = state.resolve()
    pid_file = state / "registry.pid"
    try:
        running = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        running = None
    if running is not None and _ours(running, state):
        # Writing a new PID file over it would leave that one running with no way to stop it.
        raise InputError(f"the registry started from {state} still runs (pid {running}) on "
                         "another port; stop it first: invoke registry --stop", field="port")
    state.mkdir(parents=True, exist_ok=True)
    config_path, log_path = state / "config.yml", state / "registry.log"
    config_path.write_text(yaml.safe_dump(config(host, state / "storage", name="local-registry"),
                                          sort_keys=False))
    with log_path.open("ab") as log:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if answers(f"http://{host}"):
            print(f"registry started on {host} (pid {process.pid}, storage {state / 'storage'}, "
                  f"log {log_path})")
            return host
        if process.poll() is not None:
            break
        time.sleep(0.2)
    if process.poll() is None:  # not answering yet: do not leave it running behind the error
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    else:
        process.wait()
    pid_file.unlink(missing_ok=True)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
    raise BuilderError(f"the registry on {host} did not come up; see {log_path}:\n{tail}")


def stop(state: Path = DEFAULT_STATE) -> None:
    """Stop the registry `start` started, by its PID file (never by name), and wait until it
    has exited, so that the port is free when this returns."""
    state = state.resolve()
    stop_recorded(state / "registry.pid", lambda pid: _ours(pid, state), "registry",
                  f"from {state}")


def stop_recorded(pid_file: Path, ours: Callable[[int], bool], what: str, where: str,
                  served: str = "") -> bool:
    """Stop the process `pid_file` records, if it is still ours (a PID can be reused), and
    wait until it is gone; then forget it. `what` and `where` name it in the message, and
    `served` says what the one stopped served. False when `pid_file` recorded none."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        print(f"no {what} started {where}")
        return False
    if ours(pid):
        stop_process(pid, lambda: ours(pid))
        print(f"stopped the {what}{served} (pid {pid})")
    else:
        print(f"the {what} (pid {pid}) is no longer running")
    pid_file.unlink()
    return True


def _ours(pid: int, state: Path) -> bool:
    """Whether `pid` still runs the registry started with this state directory's config
    (a PID can be reused, and other registries may run from other state directories)."""
    argv = process_argv(pid)
    return (argv is not None and len(argv) == 3 and argv[0].endswith("docker-registry")
            and argv[1:] == ["serve", str(state / "config.yml")])


def process_argv(pid: int) -> list[str] | None:
    """The command line `pid` runs, or None when no such process runs (gone, or exited and not
    yet reaped)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if status.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return None
    return [part.decode(errors="replace") for part in argv]


def stop_process(pid: int, ours: Callable[[], bool]) -> None:
    """SIGTERM `pid`, SIGKILL it if it outlives 10 s; returns once `ours()` says it is gone."""
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, ours, 10):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, ours, 5)


def _wait_gone(pid: int, ours: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
                return True
        except ChildProcessError:
            pass
        if not ours():
            return True
        time.sleep(0.1)
    return False
