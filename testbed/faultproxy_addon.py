"""A mitmproxy addon that fails a seeded share of requests, at most `max_faults` in all.

Loaded by `mitmdump -s` (testbed/faultproxy.py). Each request draws from one seeded
generator: with probability `fault_rate`, while faults are left, it fails with 503, 502, 429
(Retry-After: 1, a Docker Hub style TOOMANYREQUESTS body) or a dropped connection. Half of the
drops come before the registry sees the request, half after it answered (the answer is lost:
the client cannot tell whether its write landed). `fault_match` narrows the faults
to the requests it matches. Every fault is one log line `FAULT n/max …`.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading

from mitmproxy import ctx, http

_KINDS = ("503", "502", "429", "drop")
READY = "fault proxy ready"


class Faults:
    def __init__(self) -> None:
        self.rng: random.Random | None = None
        self.injected = 0
        self.lock = threading.Lock()
        self.late_drops: set[int] = set()  # ids of flows to drop once the registry answered

    def load(self, loader) -> None:
        # mitmproxy options have no float type: the rate is a decimal string.
        loader.add_option("fault_rate", str, "0.2", "share of requests that fail, 0 to 1")
        loader.add_option("fault_seed", int, 1, "seed of the fault generator")
        loader.add_option("max_faults", int, 40, "faults in all, then every request passes")
        loader.add_option("fault_match", str, "",
                          "a regex on 'METHOD path': only requests it matches may fail")

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
            if self.injected >= ctx.options.max_faults:
                return None
            if self.rng.random() >= float(ctx.options.fault_rate):
                return None
            self.injected += 1
            return self.rng.choice(_KINDS), self.rng.random() < 0.5

    def _say(self, kind: str, flow: http.HTTPFlow) -> None:
        logging.warning(f"FAULT {self.injected}/{ctx.options.max_faults} {kind} "
                        f"{flow.request.method} {flow.request.path}")

    def request(self, flow: http.HTTPFlow) -> None:
        drawn = self._draw(flow)
        if drawn is None:
            return
        kind, late = drawn
        if kind == "drop":
            if late:
                self.late_drops.add(id(flow))
                return
            self._say("drop before", flow)
            flow.kill()
            return
        self._say(kind, flow)
        if kind == "429":
            body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS",
                                           "message": "injected: slow down"}]})
            flow.response = http.Response.make(429, body, {"Content-Type": "application/json",
                                                           "Retry-After": "1"})
        else:
            reason = {"503": "Service Unavailable", "502": "Bad Gateway"}[kind]
            flow.response = http.Response.make(int(kind), f"injected {kind} {reason}\n",
                                               {"Content-Type": "text/plain"})

    def response(self, flow: http.HTTPFlow) -> None:
        if id(flow) in self.late_drops:
            self.late_drops.discard(id(flow))
            self._say("drop after", flow)
            flow.kill()


addons = [Faults()]
