"""A registry that stalls: it answers the /v2/ ping, then sends manifests a byte at a time, or
never answers at all. For bounded waits; the fault proxy (mitmproxy) cannot slow an answer.

It listens on a free 127.0.0.1 port over plain HTTP (a loopback registry), in threads of the
test's own process; `stop()` ends it and every answer it is dripping.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b'{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"' \
       + b" " * 1024 + b"}"


@dataclass
class StallServer:
    host: str
    server: ThreadingHTTPServer = field(repr=False)
    stopped: threading.Event = field(repr=False)
    requests: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def start_stall_server(mode: str, interval: float = 5.0) -> StallServer:
    """`mode`: "drip" (headers at once, then one byte of the body every `interval` seconds)
    or "silent" (the connection accepted, nothing ever sent)."""
    stopped = threading.Event()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            seen.append(f"{self.command} {self.path}")
            if mode == "silent":
                stopped.wait()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            for byte in BODY:
                if stopped.wait(interval):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return StallServer(f"127.0.0.1:{server.server_address[1]}", server, stopped, seen)
