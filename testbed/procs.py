"""Background servers started by the test bed, stopped by PID and never by name.

Each server records its PID, its command line and the PID of the pytest that owns it in
``run/``, so a session killed before its teardown is cleaned up by the next one.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .paths import run_dir


class StartError(RuntimeError):
    """A test-bed server did not come up; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def alive(pid: int) -> bool:
    """Running, not a zombie: where PID 1 does not reap, a killed session stays one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _stop_pid(pid: int, argv: list[str], timeout: float) -> None:
    """SIGTERM, then SIGKILL, only while the PID still runs the command we started."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if _cmdline(pid) != argv:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if _cmdline(pid) != argv:
                    return
            time.sleep(0.1)


@dataclass
class Server:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen
    stop_timeout: float = 10.0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def _record(self) -> Path:
        return run_dir() / f"{self.pid}.json"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._record.unlink(missing_ok=True)
        _atexit_servers.pop(self.pid, None)

    def wait_ready(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it is true; a dead or silent server raises StartError with its log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                self.stop()
                raise StartError(f"{self.name} exited with {self.process.returncode} before {what}; "
                                 f"log {self.log}:\n{log_tail(self.log)}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise StartError(f"{self.name} did not answer ({what}) within {timeout:.0f} s; "
                         f"log {self.log}:\n{log_tail(self.log)}")


_atexit_servers: dict[int, Server] = {}


def start(name: str, argv: list[str], log: Path, *, stop_timeout: float = 10.0,
          env: dict[str, str] | None = None) -> Server:
    """Start `argv` in its own session (a Ctrl-C of pytest reaches our teardown, not the server)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env)
    server = Server(name, argv, log, process, stop_timeout)
    server._record.write_text(json.dumps({"pid": process.pid, "argv": argv, "owner": os.getpid(),
                                          "name": name}))
    _atexit_servers[process.pid] = server
    return server


def reap_orphans() -> list[str]:
    """Stop servers recorded by test sessions that died without their teardown; returns their names."""
    reaped = []
    for record in run_dir().glob("*.json"):
        try:
            entry = json.loads(record.read_text())
        except (OSError, ValueError):
            record.unlink(missing_ok=True)
            continue
        if alive(entry["owner"]) and entry["owner"] != os.getpid():
            continue
        if _cmdline(entry["pid"]) == entry["argv"]:
            _stop_pid(entry["pid"], entry["argv"], timeout=15.0)
            reaped.append(f"{entry['name']} (pid {entry['pid']})")
        record.unlink(missing_ok=True)
    return reaped


@atexit.register
def _stop_all() -> None:
    for server in list(_atexit_servers.values()):
        server.stop()
