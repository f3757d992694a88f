"""A stub registry on another loopback address that asks for Basic auth and records every request.

It stands in for a hostile base-image host and for a foreign upload `Location`: a real
registry cannot be made to show us the Authorization headers it receives. `/v2/` and every
write answer 401 with a Basic challenge, as a registry that wants credentials does; manifests
and blobs are served to anyone, from images made here (`add_image`) or else from `upstream`
(a real registry of the test bed), so that a base can be pinned there. Blobs of images made
here can come slowly (`pace="trickle"`) or stop after the first bytes until the stub stops
(`pace="stall"`), to interrupt a pull in the middle; with `challenge=False` it asks for no
auth at all (an engine refuses to pull anonymously from a host that challenges).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_CHUNK = 1024


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    user_agent: str


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class StubRegistry:
    def __init__(self, address: str = "127.0.0.2", *, upstream: str | None = None,
                 pace: str = "normal", challenge: bool = True) -> None:
        self.upstream = upstream  # "http://127.0.0.1:PORT": where unknown documents come from
        self.challenge = challenge  # False: /v2/ answers 200, and an engine pulls anonymously
        self.pace = pace  # "normal", "trickle" or "stall": how blobs made here are served
        self.seen: list[Seen] = []
        self._documents: dict[tuple[str, str], tuple[str, bytes]] = {}  # (repo, ref) → type, body
        self._blobs: dict[str, bytes] = {}  # digest → bytes, of images made here
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((address, 0), self._handler())
        self._server.daemon_threads = True
        self.host = f"{address}:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubRegistry:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def authorizations(self) -> list[str]:
        with self._lock:
            return [s.authorization for s in self.seen if s.authorization]

    def blob_requests(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if "/blobs/" in s.path]

    def add_image(self, repository: str, tag: str, files: dict[str, bytes]) -> str:
        """A one-layer linux/amd64 image of `files`; returns its manifest digest."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        layer = gzip.compress(raw.getvalue(), mtime=0)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [_digest(raw.getvalue())]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config), "digest": _digest(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer), "digest": _digest(layer)}]}).encode()
        with self._lock:
            self._blobs[_digest(config)] = config
            self._blobs[_digest(layer)] = layer
            for reference in (tag, _digest(manifest)):
                self._documents[(repository, reference)] = (DOCKER_MANIFEST, manifest)
        return _digest(manifest)

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A TLS hello gets "HTTP/1.0 400", as from a Go server: containerd falls back to plain
            # HTTP for an insecure registry only when the answer starts with "HTTP/" (the
            # default, HTTP/0.9, sends the error page without a status line).
            default_request_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def _record(self) -> None:
                with stub._lock:
                    stub.seen.append(Seen(self.command, self.path,
                                          self.headers.get("Authorization"),
                                          self.headers.get("User-Agent", "")))

            def _challenge(self) -> None:
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="stub"')
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _read_body(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)

            def _serve(self, head: bool) -> None:
                self._record()
                parts = self.path.split("?")[0].split("/")
                if self.path.split("?")[0] in ("/v2", "/v2/") and not stub.challenge:
                    return self._answer("application/json", b"{}", head=head)
                if self.path.split("?")[0] in ("/v2", "/v2/") or len(parts) < 5 \
                        or parts[-2] not in ("manifests", "blobs"):
                    return self._challenge()
                repository, kind, reference = "/".join(parts[2:-2]), parts[-2], parts[-1]
                with stub._lock:
                    made = (stub._documents.get((repository, reference)) if kind == "manifests"
                            else (("application/octet-stream", stub._blobs[reference])
                                  if reference in stub._blobs else None))
                if made:
                    return self._answer(*made, head=head, paced=kind == "blobs")
                if not stub.upstream:
                    return self._status(404)
                answer = requests.request(self.command, stub.upstream + self.path, timeout=60,
                                          headers={"Accept": self.headers.get("Accept", "*/*")})
                self._answer(answer.headers.get("Content-Type", "application/octet-stream"),
                             answer.content, head=head, status=answer.status_code,
                             length=answer.headers.get("Content-Length"),
                             digest=answer.headers.get("Docker-Content-Digest"))

            def _status(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, media_type: str, body: bytes, *, head: bool, paced: bool = False,
                        status: int = 200, length: str | None = None,
                        digest: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", length if head and length else str(len(body)))
                if digest or body:
                    self.send_header("Docker-Content-Digest", digest or _digest(body))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.end_headers()
                if head:
                    return
                if not paced or stub.pace == "normal":
                    self.wfile.write(body)
                    return
                for start in range(0, len(body), _CHUNK):
                    self.wfile.write(body[start:start + _CHUNK])
                    self.wfile.flush()
                    if stub.pace == "stall":
                        stub._stopping.wait()  # until the stub stops: a pull that never ends
                        return
                    time.sleep(0.02)  # pacing, not a timing assertion: a pull of some seconds

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def _write(self) -> None:
                self._record()
                self._read_body()
                self._challenge()

            do_POST = do_PUT = do_PATCH = do_DELETE = _write

        return Handler
