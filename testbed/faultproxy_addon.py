"""A mitmproxy addon that fails a seeded share of requests, at most `max_faults` in all.

Loaded by `mitmdump -s` (testbed/faultproxy.py). Each request draws from one seeded
generator: with probability `fault_rate`, while faults are left, it fails with one of
`fault_kinds`: by default 503, 502, 429 (Retry-After: 1, a Docker Hub style TOOMANYREQUESTS
body) or a dropped connection. Half of the drops come before the registry sees the request,
half after it answered (the answer is lost: the client cannot tell whether its write landed).
Other kinds, for a registry that lies or fills up: any other status number (507, 413, 500: an
answer of that status, the registry never sees the request), ``html`` (200 with an HTML page),
``lie`` (the registry's answer with its JSON body re-indented, its Docker-Content-Digest kept),
``ctype=TYPE`` (the registry's answer with that Content-Type), ``digest=DIGEST`` (the
registry's answer with that Docker-Content-Digest: a stale cache). An answer made here to a HEAD
has no body, as HTTP has it. `fault_match` narrows the
faults to the requests it matches, and the first `fault_skip` of those always pass. Every
fault is one log line `FAULT n/max …`.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading

from mitmproxy import ctx, http

_KINDS = "503,502,429,drop"
_REASONS = {"503": "Service Unavailable", "502": "Bad Gateway", "500": "Internal Server Error",
            "507": "Insufficient Storage", "413": "Payload Too Large"}
_LATE = ("lie", "ctype=", "digest=")  # kinds that alter the registry's answer rather than replace it
READY = "fault proxy ready"


class Faults:
    def __init__(self) -> None:
        self.rng: random.Random | None = None
        self.injected = 0
        self.lock = threading.Lock()
        self.matched = 0  # requests `fault_match` matched so far
        self.late: dict[int, str] = {}  # flow id → the kind to apply once the registry answered

    def load(self, loader) -> None:
        # mitmproxy options have no float type: the rate is a decimal string.
        loader.add_option("fault_rate", str, "0.2", "share of requests that fail, 0 to 1")
        loader.add_option("fault_seed", int, 1, "seed of the fault generator")
        loader.add_option("max_faults", int, 40, "faults in all, then every request passes")
        loader.add_option("fault_match", str, "",
                          "a regex on 'METHOD path': only requests it matches may fail")
        loader.add_option("fault_kinds", str, _KINDS, "comma-separated kinds to draw from")
        loader.add_option("fault_skip", int, 0, "matching requests that pass before any fails")

    def configure(self, updated) -> None:
        if "fault_seed" in updated or self.rng is None:
            self.rng = random.Random(ctx.options.fault_seed)

    def running(self) -> None:
        logging.warning(READY)  # faultproxy.py waits for this line: options parsed, addon loaded

    def _draw(self, flow: http.HTTPFlow) -> tuple[str, bool] | None:
        match = ctx.options.fault_match
        if match and not re.search(match, f"{flow.request.method} {flow.request.path}"):
            return None
        with self.lock:
            self.matched += 1
            if self.matched <= ctx.options.fault_skip:
                return None
            if self.injected >= ctx.options.max_faults:
                return None
            if self.rng.random() >= float(ctx.options.fault_rate):
                return None
            self.injected += 1
            return (self.rng.choice(ctx.options.fault_kinds.split(",")),
                    self.rng.random() < 0.5)

    def _say(self, kind: str, flow: http.HTTPFlow) -> None:
        logging.warning(f"FAULT {self.injected}/{ctx.options.max_faults} {kind} "
                        f"{flow.request.method} {flow.request.path}")

    def request(self, flow: http.HTTPFlow) -> None:
        drawn = self._draw(flow)
        if drawn is None:
            return
        kind, late = drawn
        if kind.startswith(_LATE) or (kind == "drop" and late):
            self.late[id(flow)] = "drop after" if kind == "drop" else kind
            return
        if kind == "drop":
            self._say("drop before", flow)
            flow.kill()
            return
        self._say(kind, flow)
        if kind == "429":
            body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS",
                                           "message": "injected: slow down"}]})
            flow.response = http.Response.make(429, body, {"Content-Type": "application/json",
                                                           "Retry-After": "1"})
        elif kind == "html":
            flow.response = http.Response.make(
                200, "<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n",
                {"Content-Type": "text/html"})
        else:
            reason = _REASONS.get(kind, "injected")
            flow.response = http.Response.make(int(kind), f"injected {kind} {reason}\n",
                                               {"Content-Type": "text/plain"})
            flow.response.reason = reason
        if flow.request.method == "HEAD":
            # An answer to a HEAD has no body: one sent anyway stays on the connection, and
            # the client reads it as the start of its next answer there, one more fault that
            # none drew.
            flow.response.content = b""

    def response(self, flow: http.HTTPFlow) -> None:
        kind = self.late.pop(id(flow), None)
        if kind is None:
            return
        self._say(kind, flow)
        if kind == "drop after":
            flow.kill()
        elif kind == "lie":
            # Other bytes, the same document: what a proxy that re-serializes JSON sends.
            headers = dict(flow.response.headers)
            flow.response.content = json.dumps(json.loads(flow.response.content), indent=1).encode()
            flow.response.headers["Docker-Content-Digest"] = headers.get("Docker-Content-Digest", "")
        elif kind.startswith("digest="):
            flow.response.headers["Docker-Content-Digest"] = kind.split("=", 1)[1]
        else:
            flow.response.headers["Content-Type"] = kind.split("=", 1)[1]


addons = [Faults()]
