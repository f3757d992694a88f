"""An in-memory registry behind a requests transport adapter, counting every request by host.

Enough of the distribution API for a release and its pages: the /v2/ ping, manifests by tag
and digest (GET, HEAD, PUT), blobs (GET, HEAD), uploads (POST, PUT, DELETE) and cross-
repository mounts. A host given a token service answers as Docker Hub does: 401 with a
Bearer challenge until a request carries a token, which its token host hands to anyone (so
its token requests are counted too); other hosts ask for nothing. Mount `adapter(who)` on a
session for each host, and every request that session sends is answered here and recorded
with `who` sent it (the project's client, or a stand-in engine's pulls and pushes).

Used by bench/farm_budget.py, which counts a whole family's release through the real stages.
"""
from __future__ import annotations

import io
import itertools
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from builder.model.platforms import Platform, platform
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, sha256_digest

DOCKER_HUB_API, DOCKER_HUB_AUTH = "registry-1.docker.io", "auth.docker.io"
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)$")
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Seen:
    host: str
    method: str
    kind: str  # ping, token, manifest, blob, upload
    who: str  # whose session sent it
    status: int
    path: str  # /v2/library/debian/manifests/trixie-slim


class MemoryRegistry:
    def __init__(self, token_services: dict[str, str] | None = None) -> None:
        # host → its token host: Docker Hub's by default, as Docker Hub's challenge names it.
        self.token_services = token_services if token_services is not None \
            else {DOCKER_HUB_API: DOCKER_HUB_AUTH}
        self._manifests: dict[tuple[str, str, str], tuple[str, bytes]] = {}
        self._blobs: dict[str, bytes] = {}
        self._members: set[tuple[str, str, str]] = set()  # (host, repository, blob digest)
        self._uploads: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []

    def adapter(self, who: str) -> BaseAdapter:
        return _Adapter(self, who)

    def take(self) -> list[Seen]:
        """The requests since the last take, and forget them."""
        with self._lock:
            taken, self.seen = self.seen, []
        return taken

    # --- seeding, uncounted ---------------------------------------------------------------

    def put_blob(self, host: str, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        with self._lock:
            self._blobs[digest] = data
            self._members.add((host, repository, digest))
        return digest

    def put_base(self, host: str, repository: str, tag: str,
                 platforms: Sequence[Platform]) -> str:
        """A base image: a list of one small image per platform (Windows ones with a build of
        their os.version line); the list's digest."""
        entries = []
        for target in platforms:
            known = platform(target.name)
            config = {"architecture": known.architecture, "os": known.os,
                      **({"variant": known.variant} if known.variant else {}),
                      **({"os.version": f"{target.os_version}.1"} if target.os_version else {})}
            layer = self.put_blob(host, repository, f"{repository}:{tag} {target.name}".encode())
            data = json.dumps({**config, "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
            body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": self.put_blob(host, repository, data), "size": len(data)},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "digest": layer, "size": 1}]}).encode()
            entries.append({"mediaType": DOCKER_MANIFEST, "size": len(body),
                            "digest": self.put_manifest(host, repository, None, DOCKER_MANIFEST,
                                                        body),
                            "platform": config})
        listed = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST,
                             "manifests": entries}).encode()
        return self.put_manifest(host, repository, tag, DOCKER_LIST, listed)

    def put_manifest(self, host: str, repository: str, tag: str | None, media_type: str,
                     body: bytes) -> str:
        digest = sha256_digest(body)
        with self._lock:
            for reference in filter(None, (digest, tag)):
                self._manifests[(host, repository, reference)] = (media_type, body)
        return digest

    # --- the API ---------------------------------------------------------------------------

    def answer(self, request: requests.PreparedRequest, who: str) -> requests.Response:
        url = urlsplit(request.url)
        host, path, method = url.netloc, url.path, request.method
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if host in self.token_services.values():
            status, headers, body, kind = 200, {"Content-Type": "application/json"}, \
                json.dumps({"token": "t", "expires_in": 300}).encode(), "token"
        elif host in self.token_services and not (request.headers.get("Authorization") or
                                                  "").startswith("Bearer "):
            realm = f'Bearer realm="https://{self.token_services[host]}/token",service="{host}"'
            status, headers, body = 401, {"WWW-Authenticate": realm}, _error("UNAUTHORIZED")
            kind = _kind(path)
        else:
            status, headers, body = self._serve(host, method, path, query, request.body,
                                                request.headers)
            kind = _kind(path)
        headers.setdefault("Docker-Distribution-Api-Version", "registry/2.0")
        headers["Content-Length"] = str(len(body))
        with self._lock:
            self.seen.append(Seen(host, method, kind, who, status, path))
        return _response(request, status, headers, b"" if method == "HEAD" else body)

    def _serve(self, host, method, path, query, data, headers) -> tuple[int, dict, bytes]:
        if path.rstrip("/") == "/v2":
            return 200, {}, b"{}"
        if match := _MANIFEST.match(path):
            return self._manifest(host, method, match["repo"], match["ref"], data, headers)
        if match := _UPLOAD.match(path):
            return self._upload(host, method, match["repo"], match["id"], query, data)
        if match := _BLOB.match(path):
            with self._lock:
                present = (host, match["repo"], match["digest"]) in self._members
                data = self._blobs.get(match["digest"])
            if not present or data is None:
                return 404, {}, _error("BLOB_UNKNOWN")
            return 200, {"Content-Type": "application/octet-stream",
                         "Docker-Content-Digest": match["digest"]}, data
        return 404, {}, _error("NAME_UNKNOWN")

    def _manifest(self, host, method, repository, reference, data, headers):
        if method == "PUT":
            digest = self.put_manifest(host, repository, None if reference.startswith("sha256:")
                                       else reference, headers.get("Content-Type", ""), data)
            return 201, {"Docker-Content-Digest": digest}, b""
        with self._lock:
            found = self._manifests.get((host, repository, reference))
        if found is None:
            return 404, {}, _error("MANIFEST_UNKNOWN")
        media_type, body = found
        return 200, {"Content-Type": media_type, "Docker-Content-Digest": sha256_digest(body)}, body

    def _upload(self, host, method, repository, upload, query, data):
        if method == "POST" and "mount" in query:
            with self._lock:
                if (host, query.get("from", ""), query["mount"]) in self._members:
                    self._members.add((host, repository, query["mount"]))
                    return 201, {"Docker-Content-Digest": query["mount"]}, b""
        if method == "POST":
            upload = str(next(self._ids))
            with self._lock:
                self._uploads[upload] = (host, repository)
            return 202, {"Location": f"/v2/{repository}/blobs/uploads/{upload}"}, b""
        with self._lock:
            known = self._uploads.pop(upload, None)
        if known is None:
            return 404, {}, _error("BLOB_UPLOAD_UNKNOWN")
        if method == "DELETE":
            return 204, {}, b""
        if sha256_digest(data or b"") != query.get("digest"):
            return 400, {}, _error("DIGEST_INVALID")
        return 201, {"Docker-Content-Digest": self.put_blob(host, repository, data or b"")}, b""


def _kind(path: str) -> str:
    if _UPLOAD.match(path):
        return "upload"
    if _MANIFEST.match(path):
        return "manifest"
    return "blob" if _BLOB.match(path) else "ping"


def _error(code: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()


def _response(request, status: int, headers: dict, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response.request, response.url = status, request, request.url
    response.headers = CaseInsensitiveDict(headers)
    response._content, response._content_consumed = body, True
    response.raw, response.encoding = io.BytesIO(body), "utf-8"
    return response


class _Adapter(BaseAdapter):
    def __init__(self, registry: MemoryRegistry, who: str) -> None:
        super().__init__()
        self.registry, self.who = registry, who

    def send(self, request, **kwargs) -> requests.Response:
        return self.registry.answer(request, self.who)

    def close(self) -> None:
        pass


def counts(seen: list[Seen]) -> Counter:
    """(host, who, kind, method) → how many."""
    return Counter((s.host, s.who, s.kind, s.method) for s in seen)
