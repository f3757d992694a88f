"""A counting reverse proxy in front of a registry: every request anyone makes, by kind.

Our client, the Docker engine's pushes and `docker manifest push` all go through it when they
are pointed at its host instead of the registry's. It forwards each request as it came (the
Host header too, so the registry's upload Locations name the proxy and uploads stay in view),
records it, and can hold each request a little (`latency`, seconds) so that concurrent
requests overlap, as they would against a registry across the internet. A TLS handshake gets
the answer Go's plain HTTP server gives, which is what makes Docker clients fall back to HTTP
on a loopback registry (the docker CLI's `manifest` commands stop at anything else).

A hand-written proxy rather than mitmproxy: counting needs the request line only, and this
one runs in-process, where the tests and benches read the counts without a side channel.
"""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_DOCUMENT = re.compile(r"^/v2/(?P<repository>.+)/(?P<kind>manifests|blobs)/(?P<reference>[^/?]+)$")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "proxy-authorization", "proxy-authenticate"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    status: int
    query: str = ""

    @property
    def kind(self) -> str:
        """`manifest`, `blob`, `upload`, `ping` or `other` (a token request, say)."""
        if _UPLOAD.match(self.path + "/") or _UPLOAD.match(self.path):
            return "upload"
        match = _DOCUMENT.match(self.path)
        if match:
            return "manifest" if match["kind"] == "manifests" else "blob"
        return "ping" if self.path.rstrip("/") == "/v2" else "other"


@dataclass(frozen=True)
class Counts:
    """What went through the proxy over some stretch of time."""
    requests: tuple[Request, ...]
    max_in_flight: int = 0  # the most requests it had at once

    @property
    def total(self) -> int:
        return len(self.requests)

    def by_kind(self) -> Counter:
        """("manifest", "GET") → how many, and so on."""
        return Counter((r.kind, r.method) for r in self.requests)

    def count(self, kind: str, method: str) -> int:
        return self.by_kind()[(kind, method)]

    @property
    def documents(self) -> int:
        """Distinct documents read: each manifest (by tag or digest) and blob path once."""
        return len({r.path for r in self.requests
                    if r.kind in ("manifest", "blob") and r.method in ("GET", "HEAD")})

    @property
    def blob_uploads(self) -> int:
        """Uploads completed (the PUT that ends an upload session) and mounts asked for."""
        return sum(1 for r in self.requests if r.kind == "upload" and r.method == "PUT") + \
            sum(1 for r in self.requests if r.kind == "upload" and r.method == "POST"
                and "mount=" in r.query)

    def describe(self) -> str:
        parts = [f"{n} {kind} {method}" for (kind, method), n in sorted(self.by_kind().items())]
        return f"{self.total} requests ({', '.join(parts) or 'none'})"


class CountingProxy(ThreadingHTTPServer):
    """Listens on 127.0.0.1 (a free port); forwards to `upstream` ("http://127.0.0.1:5000")."""
    daemon_threads = True

    def __init__(self, upstream: str, *, latency: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.latency = latency
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._in_flight = self._max_in_flight = 0
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread = threading.Thread(target=self.serve_forever, name="count-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def take(self) -> Counts:
        """The requests since the last take (or the start), and forget them."""
        with self._lock:
            taken, self._requests = self._requests, []
            most, self._max_in_flight = self._max_in_flight, self._in_flight
        return Counts(tuple(taken), most)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self, request: Request) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def handle_one_request(self) -> None:
        if self.rfile.peek(1)[:1] == b"\x16":  # a TLS ClientHello: we speak plain HTTP only
            self.wfile.write(b"HTTP/1.0 400 Bad Request\r\n\r\n"
                             b"Client sent an HTTP request to an HTTPS server.\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        proxy = self.server
        path, _, query = self.path.partition("?")
        proxy._enter()
        upstream = None
        try:
            body = self._body()
            if proxy.latency:
                time.sleep(proxy.latency)
            headers: dict[str, str] = {}
            for key, value in self.headers.items():  # Go clients send one Accept line per type
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
            upstream = proxy.session.request(self.command, proxy.upstream + self.path,
                                             headers=headers, data=body, allow_redirects=False,
                                             stream=True, timeout=300)
            content = upstream.raw.read(decode_content=False) if self.command != "HEAD" else b""
            upstream.close()
        finally:
            # Counted before the answer goes out: whoever reads the counts after their request
            # returned finds it there.
            proxy._leave(Request(self.command, path,
                                 upstream.status_code if upstream is not None else 502, query))
        self.send_response(upstream.status_code)
        for key, value in upstream.headers.items():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        length = upstream.headers.get("Content-Length") if self.command == "HEAD" \
            else str(len(content))
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if content:
            self.wfile.write(content)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass
