"""A fault-injecting reverse proxy in front of a test-bed registry: mitmdump with faultproxy_addon.py.

It listens on a free 127.0.0.1 port over plain HTTP, so the engine takes it for a registry
as it does the test registries (127.0.0.0/8 is insecure by Docker's default: HTTP allowed).
The Host header is passed through, so the registry's upload Locations name the proxy and a
client stays behind it for the whole upload. Seeded and bounded: `rate` of the requests
fail, `max_faults` at most, then every request passes.
"""
from __future__ import annotations

import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .registry import Registry

ADDON = Path(__file__).with_name("faultproxy_addon.py")
READY = "fault proxy ready"  # the addon's line once it runs (faultproxy_addon.READY)
_FAULT_RE = re.compile(r"FAULT (\d+)/\d+ (\S+(?: before| after)?) (\S+) (\S+)")


@dataclass(frozen=True)
class FaultProxy:
    host: str  # "127.0.0.1:PORT": a registry host, as image references name it
    url: str
    upstream: Registry
    log: Path
    server: procs.Server | None = field(default=None, repr=False, compare=False)

    def faults(self) -> list[tuple[str, str, str]]:
        """(kind, method, path) of every fault injected so far, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [(m.group(2), m.group(3), m.group(4)) for m in _FAULT_RE.finditer(text)]

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _ready(log: Path, port: int) -> bool:
    """The addon's line, then a connect (not a request: that would draw from the faults)."""
    if READY not in procs.log_tail(log, 200):
        return False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def start_fault_proxy(workdir: Path, upstream: Registry, *, rate: float = 0.2, seed: int = 1,
                      max_faults: int = 40, match: str = "", kinds: str = "", skip: int = 0,
                      name: str = "fault-proxy") -> FaultProxy:
    """`rate`: a decimal string (mitmproxy options have no float type); `match`: a regex on
    "METHOD path" that a request must match to be failed (default: every request), `skip`: how
    many of those pass first; `kinds`: the faults drawn from, comma-separated (default 503,
    502, 429 and drops; see faultproxy_addon.py for the others)."""
    mitmdump = Path(sys.executable).with_name("mitmdump")  # the venv's, from pyproject's test deps
    if not mitmdump.exists():
        raise procs.StartError("mitmdump not found: pip install mitmproxy (scripts/setup does)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    host = f"127.0.0.1:{port}"
    log = workdir / "mitmdump.log"
    argv = [str(mitmdump), "--mode", f"reverse:{upstream.url}", "--listen-host", "127.0.0.1",
            "--listen-port", str(port), "-s", str(ADDON), "--set", f"confdir={workdir / 'conf'}",
            "--set", "keep_host_header=true", "--set", "flow_detail=0",
            "--set", f"fault_rate={rate}", "--set", f"fault_seed={seed}",
            "--set", f"max_faults={max_faults}", "--set", f"fault_match={match}",
            "--set", f"fault_skip={skip}"] + (["--set", f"fault_kinds={kinds}"] if kinds else [])
    server = procs.start(name, argv, log)
    server.wait_ready(lambda: _ready(log, port), timeout=60, what=f"listening on {host}")
    return FaultProxy(host, f"http://{host}", upstream, log, server)
