"""A small client for the Docker Registry HTTP API v2 / OCI distribution API.

Plain ``requests`` (oras-py and python-dxf each fail one of our auth setups: docs/design/libraries.md).
One ``RegistryClient`` per registry host, shared by threads; a run's stages get theirs from one
``Registries``, so they share it.

Pooling. Each client has one connection pool and a limit of ``concurrency`` requests in flight
(default 8), held by a semaphore around every request its session sends, so the limit holds
however many threads (the build stage runs one per job) call the client at once.

Caching. Manifests and blobs by digest, and what HEADs found present, come from the client's
``DocumentCache`` once read (``builder.registry.documents``); ``Registries`` hands one cache to all its
clients. A tag is never cached: it moves.

Transport. HTTPS with verification, always. The CA bundle is, in order: the ``ca_bundle``
argument, Docker's ``/etc/docker/certs.d/<host>/ca.crt``, then requests' default (which
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override). ``verify=`` goes on every request because
those variables override ``Session.verify``. Plain HTTP is used the way Docker treats insecure
registries: for a loopback host (127.0.0.0/8, ::1, localhost) or with ``insecure=True``, when the
HTTPS handshake fails and the same port answers as a registry over HTTP.

Auth. The ``/v2/`` challenge decides: Basic sends the credentials on every request; Bearer
fetches a token per scope set (``repository:R:pull``; ``pull,push`` for writes; plus
``repository:SRC:pull`` for cross-repository mounts) with GET and Basic credentials when there
are some, cached per scope until it expires. Credentials come from ``auth.credentials_for`` the
first time a registry asks for them; the CI pair only when this client is for the run's
``target`` (see builder/auth.py). They go to this host alone: an upload ``Location`` on
another host gets the request without them.

Retries. Every request goes through the one retry policy (`builder.registry.retry`): 429, 5xx,
dropped connections (also midway through a body) and timeouts are tried again, with the
policy's backoff or what ``Retry-After`` asks (capped), within the host's budget for the run.
A body is bytes, so a retried upload sends it again from the start; an upload whose session
the registry closed after an answer we never saw starts over from a new session.

Errors. Every failure is a ``RegistryError`` (a ``BuilderError``: exit code 1) of one line that
names the registry, the repository, the registry's error code and message, and what to do.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from builder.registry import credentials as auth
from builder.registry import retry
from builder.registry.credentials import Credentials
from builder.registry.documents import DocumentCache
from builder.model.errors import BuilderError, InputError
from builder.model.platforms import Platform, image_platform, oci_text, version_key
from builder.model.reference import (ACCEPT_ALL, DOCKER_HUB, DOCKER_HUB_HOSTS, IMAGE_TYPES, BlobInfo,
                        Descriptor, ImageRef, Manifest, is_loopback, sha256_digest)

_DOCKER_HUB_API = "registry-1.docker.io"
_SERVER_ERRORS = {500, 502, 503, 504}
_TOKEN_MARGIN = 10.0  # seconds before a token's expiry that it is renewed
DEFAULT_CONCURRENCY = 8  # requests in flight per registry: the Docker engine's own default is 3-5
_CACHED_BLOB_MAX = 4 << 20  # bytes: configs are kept, a layer someone reads whole is not


class RegistryError(BuilderError):
    def __init__(self, message: str, *, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class NotFound(RegistryError):
    """The registry answered 404 (the manifest, tag or blob does not exist there)."""


class Unauthorized(RegistryError):
    """The registry refused the credentials, wants some we do not have, or denied the action."""


class TLSFailed(RegistryError):
    """The TLS handshake failed: an untrusted certificate, or a server that speaks plain HTTP."""


class _LimitedSession(requests.Session):
    """A session that sends at most `limit` requests at once, on a pool of that many connections."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._slots = threading.BoundedSemaphore(limit)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=limit)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, *args, **kwargs) -> requests.Response:
        # Without stream=True the body is read before request() returns: the slot and the
        # connection are both free again when it does.
        with self._slots:
            return super().request(*args, **kwargs)


class RegistryClient:
    def __init__(self, registry: str, *, credentials: Credentials | None = None,
                 target: str | None = None, ca_bundle: str | None = None,
                 insecure: bool = False, policy: retry.Policy = retry.POLICY,
                 timeout: float = 60.0, concurrency: int = DEFAULT_CONCURRENCY,
                 cache: DocumentCache | None = None) -> None:
        self.registry = DOCKER_HUB if registry in DOCKER_HUB_HOSTS else registry
        self.host = _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        self.policy = policy
        self.timeout = timeout
        self._credentials = credentials
        self._credentials_looked_up = credentials is not None
        self._target = target  # the run's --registry: the CI pair's one registry
        self._verify = ca_bundle or _docker_certs_ca(self.registry) or True
        self._allow_http = insecure or is_loopback(self.host)
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None  # ("bearer", {realm, service})
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._credentials_lock = threading.Lock()  # a helper may prompt: run it once
        self.concurrency = max(1, concurrency)
        self.cache = cache if cache is not None else DocumentCache()
        self._session = _LimitedSession(self.concurrency)

    # --- manifests -------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str,
                     accept: tuple[str, ...] = ACCEPT_ALL, *, head_first: bool = False) -> Manifest:
        """The manifest at a tag or digest. By digest it comes from the cache once read.

        `head_first`, for a tag whose document this run has likely read already: a HEAD for
        the digest (Docker Hub does not count HEADs against its pull limit), then the body by
        that digest, from the cache when it is there.
        """
        if accept != ACCEPT_ALL:  # another rendering of a tag: not what the cache holds
            return self._fetch_manifest(repository, reference, accept)
        if head_first and not _is_digest(reference):
            digest = self._head_manifest(repository, reference).headers.get(
                "Docker-Content-Digest")
            reference = digest if digest and _is_digest(digest) else reference
        if not _is_digest(reference):
            manifest = self._fetch_manifest(repository, reference, accept)
            self.remember(repository, manifest)
            return manifest

        def fetch() -> Manifest:
            manifest = self._fetch_manifest(repository, reference, accept)
            self._present(repository, manifest)
            return manifest

        # Content only: read from another repository it says nothing of this one's.
        return self.cache.get((self.registry, "manifest", reference), fetch)

    def remember(self, repository: str, manifest: Manifest) -> None:
        """Keep a manifest this run holds and `repository` has (read by tag, written, or
        assembled and found there): its bytes are its digest's, whoever asks."""
        self.cache.put((self.registry, "manifest", manifest.digest), manifest)
        self._present(repository, manifest)

    def _present(self, repository: str, manifest: Manifest) -> None:
        self.cache.put((self.registry, "manifest-head", repository, manifest.digest),
                       Descriptor(manifest.media_type, manifest.digest, manifest.size))

    def _fetch_manifest(self, repository: str, reference: str,
                        accept: tuple[str, ...]) -> Manifest:
        what = f"manifest {repository}{_at(reference)}"
        response = self._call("GET", repository, f"/manifests/{reference}", what,
                              headers={"Accept": ", ".join(accept)})
        body = response.content
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.registry}: {what} came back with digest "
                                f"{digest}; the registry or a proxy altered it")
        return Manifest(_media_type(response, body), digest, body)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor as the registry reports it, or None when it does not exist.
        By digest, once found present in `repository`, from the cache."""
        if _is_digest(reference):
            return self.cache.get((self.registry, "manifest-head", repository, reference),
                                  lambda: self._descriptor(repository, reference),
                                  keep=lambda found: found is not None)
        return self._descriptor(repository, reference)

    def _descriptor(self, repository: str, reference: str) -> Descriptor | None:
        try:
            response = self._head_manifest(repository, reference)
        except NotFound:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            manifest = self.get_manifest(repository, reference)
            return Descriptor(manifest.media_type, manifest.digest, manifest.size)
        return Descriptor(_media_type(response, b""), digest,
                          int(response.headers.get("Content-Length", 0)))

    def _head_manifest(self, repository: str, reference: str) -> requests.Response:
        return self._call("HEAD", repository, f"/manifests/{reference}",
                          f"manifest {repository}{_at(reference)}",
                          headers={"Accept": ", ".join(ACCEPT_ALL)})

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT the exact bytes; returns their digest, checked against Docker-Content-Digest."""
        what = f"manifest {repository}{_at(reference)}"
        response = self._call("PUT", repository, f"/manifests/{reference}", what, push=True,
                              headers={"Content-Type": media_type}, data=body, ok=(201,))
        digest = sha256_digest(body)
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"registry {self.registry}: {what} stored as {answered}, but the "
                                f"bytes sent hash to {digest}; the registry rewrote the manifest")
        self.remember(repository, Manifest(media_type, digest, body))
        return digest

    def resolve_platform(self, ref: ImageRef, platform: Platform, *,
                         head_first: bool = False) -> Manifest:
        """The image manifest of `ref` for `platform`: the matching entry of a list or index,
        or the single manifest itself when its config is that platform. `head_first` as for
        `get_manifest`."""
        top = self.get_manifest(ref.repository, ref.reference, head_first=head_first)
        if top.is_list:
            entries = [m for m in top.json.get("manifests", [])
                       if platform.matches(*image_platform(m.get("platform") or {}))]
            if not entries:
                shown = ", ".join(oci_text(*image_platform(m.get("platform") or {})[:3])
                                  for m in top.json.get("manifests", []))
                raise NotFound(f"registry {self.registry}: {ref} has no {platform.oci} entry "
                               f"(it has: {shown or 'none'}); push that platform first")
            # Several Windows builds may match a platform without os.version: take the newest.
            entry = max(entries,
                        key=lambda m: version_key(image_platform(m["platform"]).os_version))
            return self.get_manifest(ref.repository, entry["digest"])
        if top.media_type not in IMAGE_TYPES:
            raise RegistryError(f"registry {self.registry}: {ref} is a {top.media_type}, "
                                "not an image manifest or a list")
        config = self.get_config(ref.repository, top)
        fields = image_platform(config)
        if not platform.matches(*fields):
            raise NotFound(f"registry {self.registry}: {ref} is a single "
                           f"{oci_text(*fields[:3])} image, not {platform.oci}; "
                           f"point at a {platform.oci} image or a list")
        return top

    def get_config(self, repository: str, manifest: Manifest) -> dict:
        """The image config (os, architecture, history, …) of an image manifest."""
        digest = manifest.json["config"]["digest"]
        try:
            return json.loads(self.get_blob(repository, digest))
        except ValueError:
            raise RegistryError(f"registry {self.registry}: config {repository}@{digest} "
                                "is not JSON") from None

    # --- blobs -----------------------------------------------------------------------------

    def get_blob(self, repository: str, digest: str) -> bytes:
        """The blob's bytes; a small one (a config) from the cache once read."""
        return self.cache.get((self.registry, "blob", digest),
                              lambda: self._fetch_blob(repository, digest),
                              keep=lambda data: len(data) <= _CACHED_BLOB_MAX)

    def _fetch_blob(self, repository: str, digest: str) -> bytes:
        what = f"blob {repository}@{digest}"
        data = self._call("GET", repository, f"/blobs/{digest}", what).content
        if digest.startswith("sha256:") and sha256_digest(data) != digest:
            raise RegistryError(f"registry {self.registry}: {what} came back with other content "
                                f"({sha256_digest(data)}); the storage is corrupt")
        return data

    def head_blob(self, repository: str, digest: str) -> BlobInfo | None:
        """Size, Last-Modified and Content-Type of a blob in `repository`, or None when it is not
        there; once found there, from the cache."""
        return self.cache.get((self.registry, "blob-head", repository, digest),
                              lambda: self._head_blob(repository, digest),
                              keep=lambda found: found is not None)

    def _head_blob(self, repository: str, digest: str) -> BlobInfo | None:
        try:
            response = self._call("HEAD", repository, f"/blobs/{digest}",
                                  f"blob {repository}@{digest}")
        except NotFound:
            return None
        return _blob_info(digest, response)

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` in one request unless the repository has it already; its digest."""
        digest = sha256_digest(data)
        if self.head_blob(repository, digest):
            return digest
        what = f"blob upload to {repository}"
        for _ in range(self.policy.attempts):
            started = self._call("POST", repository, "/blobs/uploads/", what, push=True, ok=(202,))
            location = self._upload_location(started, what)
            separator = "&" if "?" in location else "?"
            try:
                self._call("PUT", repository, location + f"{separator}digest={digest}", what,
                           push=True, headers={"Content-Type": "application/octet-stream"},
                           data=data, ok=(201,))
                return digest
            except NotFound as error:
                # The session is gone: a retried PUT whose first try the registry took (the
                # answer lost on the way), or an expired session. Landed, or start over.
                if "BLOB_UPLOAD_UNKNOWN" not in error.codes:
                    raise
                if self.head_blob(repository, digest):
                    return digest
                gone = error
        raise gone

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry could not mount it (blob unknown
        there, or not allowed), in which case the upload session it opened is cancelled."""
        what = f"mount of {digest} from {from_repository} into {repository}"
        response = self._call("POST", repository,
                              f"/blobs/uploads/?mount={digest}&from={from_repository}", what,
                              push=True, also_pull=from_repository, ok=(201, 202))
        if response.status_code == 201:
            return True
        location = self._upload_location(response, what)
        try:
            self._call("DELETE", repository, location, what, push=True, ok=(204, 404))
        except RegistryError:
            pass  # an abandoned upload session expires on its own; the mount result stands
        return False

    def head_url(self, url: str, digest: str) -> BlobInfo | None:
        """What a HEAD on foreign layer `digest`'s URL says (redirects followed), or None on an
        error status; once answered, from the cache. Unreachable hosts raise RegistryError."""
        def ask() -> BlobInfo | None:
            response = self._send("HEAD", url, f"foreign layer {url}", {}, None,
                                  allow_redirects=True)
            return None if response.status_code >= 400 else _blob_info(digest, response)

        return self.cache.get(("url-head", url), ask, keep=lambda found: found is not None)

    # --- plumbing --------------------------------------------------------------------------

    def _upload_location(self, response: requests.Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry}: {what}: no Location in the answer; "
                                "is this a registry v2 endpoint?")
        return urljoin(response.url, location)

    def _call(self, method: str, repository: str, path: str, what: str, *,
              headers: dict | None = None, data: bytes | None = None, push: bool = False,
              also_pull: str | None = None, ok: tuple[int, ...] = (200,)) -> requests.Response:
        """One API call with auth and retries; `path` is under /v2/<repository> or absolute."""
        base = self._ensure_base()
        url = path if "://" in path else f"{base}/v2/{repository}{path}"
        scopes = (f"repository:{repository}:{'pull,push' if push else 'pull'}",)
        if also_pull:
            scopes += (f"repository:{also_pull}:pull",)
        headers = dict(headers or {})
        # An upload Location may name another host: it gets no credentials and no token of ours.
        foreign = urlsplit(url).netloc != urlsplit(base).netloc
        fresh_auth = foreign
        while True:
            authorization = None if foreign else self._authorization(scopes)
            if authorization:
                headers["Authorization"] = authorization
            response = self._send(method, url, what, headers, data)
            if response.status_code == 401 and not fresh_auth:
                self._learn_challenge(response)
                with self._lock:
                    self._tokens.pop(scopes, None)
                fresh_auth = True
                continue
            break
        if response.status_code in ok:
            return response
        raise self._error(response, what, repository, push=push)

    def _send(self, method: str, url: str, what: str, headers: dict, data: bytes | None, *,
              allow_redirects: bool = True) -> requests.Response:
        """One request under the retry policy; the last answer comes back whatever its status,
        for `_call` to word. The body is read here (no streaming), so a connection dropped
        midway through it is retried like any other."""
        def attempt() -> requests.Response:
            try:
                return self._session.request(method, url, headers=headers, data=data,
                                             verify=self._verify, timeout=self.timeout,
                                             allow_redirects=allow_redirects)
            except requests.exceptions.SSLError as error:
                raise TLSFailed(f"registry {self.registry}: TLS failed for {what}: "
                                f"{_reason(error)}; give the registry's CA with --ca-bundle "
                                f"or /etc/docker/certs.d/{self.registry}/ca.crt") from None

        netloc = urlsplit(url).netloc
        try:
            return retry.call(attempt, transient, what=what, discard=requests.Response.close,
                              host=self.registry if netloc == self.host else netloc,
                              policy=self.policy)
        except (requests.RequestException, OSError) as error:
            after = f" after {self.policy.attempts} attempts" if transient(error) else ""
            raise RegistryError(f"registry {self.registry}: {what} failed{after}: "
                                f"{_reason(error)}; check that the registry is up and "
                                "reachable") from None

    def _ensure_base(self) -> str:
        """Pick https or (loopback/insecure only) http with a ping of /v2/, once."""
        if self._base:
            return self._base
        with self._lock:
            if self._base:
                return self._base
            https = f"https://{self.host}"
            try:
                response = self._send("GET", https + "/v2/", "the /v2/ ping", {}, None)
                base = https
            except TLSFailed as tls_error:
                if not self._allow_http:
                    raise
                plain = f"http://{self.host}"
                try:
                    response = self._send("GET", plain + "/v2/", "the /v2/ ping", {}, None)
                except RegistryError:
                    raise tls_error from None
                if "Docker-Distribution-Api-Version" not in response.headers \
                        and response.status_code not in (200, 401):
                    raise tls_error from None
                base = plain
            if response.status_code == 401:
                self._challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            self._base = base
            return base

    def _learn_challenge(self, response: requests.Response) -> None:
        challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge:
            with self._lock:
                self._challenge = challenge

    def credentials(self) -> Credentials | None:
        """The credentials this client sends (given, or looked up once), or None: anonymous."""
        with self._credentials_lock:
            if not self._credentials_looked_up:
                self._credentials = auth.credentials_for(self.registry, target=self._target)
                self._credentials_looked_up = True
            return self._credentials

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        challenge = self._challenge
        if not challenge:
            return None
        kind, params = challenge
        if kind == "basic":
            creds = self.credentials()
            return _basic(creds) if creds else None
        with self._lock:
            cached = self._tokens.get(scopes)
        if cached and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        token, lifetime = self._fetch_token(params, scopes)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 1.0))
        return f"Bearer {token}"

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.registry} asks for a Bearer token without a "
                                "realm; it is misconfigured")
        query = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        creds = self.credentials()
        headers = {"Authorization": _basic(creds)} if creds else {}
        what = f"token for {' '.join(scopes)} from {realm}"
        response = self._send("GET", requests.Request("GET", realm, params=query).prepare().url,
                              what, headers, None)
        if response.status_code in (401, 403):
            raise self._refused(response, scopes[0].split(":")[1])
        if response.status_code != 200:
            raise RegistryError(f"registry {self.registry}: {what}: HTTP {response.status_code}"
                                f"{_error_text(response)}; check the token service")
        try:
            answer = response.json()
            token = answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"registry {self.registry}: {what}: the answer has no token; "
                                "check the token service") from None
        return token, float(answer.get("expires_in") or 60)

    def _refused(self, response: requests.Response, repository: str) -> Unauthorized:
        creds = self.credentials()
        codes = _error_codes(response)
        if creds:
            return Unauthorized(f"registry {self.registry} refused the credentials for user "
                                f"{creds.username!r} (from {creds.source}) on {repository}"
                                f"{_error_text(response)}; check docker login {self.registry} / "
                                f"BUILDER_REGISTRY_USERNAME and BUILDER_REGISTRY_PASSWORD",
                                status=response.status_code, codes=codes)
        return Unauthorized(f"registry {self.registry} wants credentials for {repository}"
                            f"{_error_text(response)}; run docker login {self.registry} or set "
                            f"BUILDER_REGISTRY_USERNAME and BUILDER_REGISTRY_PASSWORD "
                            f"(or {auth.env_prefix(self.registry)}_USERNAME/_PASSWORD)",
                            status=response.status_code, codes=codes)

    def _error(self, response: requests.Response, what: str, repository: str, *,
               push: bool) -> RegistryError:
        status = response.status_code
        codes = _error_codes(response)
        if status == 401:
            return self._refused(response, repository)
        text = f"registry {self.registry}: {what}: HTTP {status}{_error_text(response)}"
        if status == 404:
            return NotFound(f"{text}; check the name and that it was pushed",
                            status=status, codes=codes)
        if status == 403:
            creds = self.credentials()
            who = f"user {creds.username!r}" if creds else "anonymous access"
            need = "push" if push else "pull"
            return Unauthorized(f"{text}; {who} may not {need} {repository}: grant it, or log in "
                                "as a user who may", status=status, codes=codes)
        if status == 429:
            hint = "rate limited even after retries; wait, or log in for a higher limit"
        elif status >= 500:
            hint = f"the registry kept failing after {self.policy.attempts} attempts; retry later"
        elif "MANIFEST_BLOB_UNKNOWN" in codes or "BLOB_UNKNOWN" in codes:
            hint = "push the blobs and child manifests into this same repository first"
        else:
            hint = "the registry rejected the request as sent"
        return RegistryError(f"{text}; {hint}", status=status, codes=codes)


class Registries:
    """The registry clients of one run: one per host (one pool, one limit), one cache for all.

    `ca_bundles` names the CA file of a host (the release registry's --ca-bundle), whichever
    stage asks for that host's client first. `target` is the run's --registry, the one the CI
    credential pair may go to (auth.credentials_for): one run, one target, so no client of
    this run carries another run's credentials.
    """

    def __init__(self, *, target: str | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                 ca_bundles: dict[str, str] | None = None,
                 cache: DocumentCache | None = None) -> None:
        if concurrency < 1:
            raise InputError(f"{concurrency} requests in flight per registry: give at least 1",
                             field="--registry-concurrency")
        self.target = target
        self.concurrency = concurrency
        self.cache = cache if cache is not None else DocumentCache()
        self._ca_bundles = dict(ca_bundles or {})
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, host: str, *, ca_bundle: str | None = None) -> RegistryClient:
        """The client of `host` (docker.io and its aliases are one), made on first use."""
        key = DOCKER_HUB if host in DOCKER_HUB_HOSTS else host
        with self._lock:
            if key not in self._clients:
                self._clients[key] = RegistryClient(
                    key, target=self.target, ca_bundle=ca_bundle or self._ca_bundles.get(key),
                    concurrency=self.concurrency, cache=self.cache)
            return self._clients[key]


def _at(reference: str) -> str:
    return f"@{reference}" if ":" in reference else f":{reference}"


def _is_digest(reference: str) -> bool:
    return reference.startswith("sha256:")


def _blob_info(digest: str, response: requests.Response) -> BlobInfo:
    size = response.headers.get("Content-Length")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return BlobInfo(digest, int(size) if size is not None and size.isdigit() else None,
                    response.headers.get("Last-Modified"), media_type or None)


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _docker_certs_ca(registry: str) -> str | None:
    path = Path("/etc/docker/certs.d") / registry / "ca.crt"
    return str(path) if path.is_file() else None


def _media_type(response: requests.Response, body: bytes) -> str:
    declared = response.headers.get("Content-Type", "").split(";")[0].strip()
    if declared and declared not in ("application/json", "application/octet-stream"):
        return declared
    try:
        return json.loads(body).get("mediaType") or declared
    except (ValueError, AttributeError):
        return declared


def _parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def transient(outcome: object) -> retry.Transient | None:
    """What is transient about a request's answer or exception (see `builder.registry.retry`)."""
    if isinstance(outcome, requests.Response):
        status = outcome.status_code
        if status != 429 and status not in _SERVER_ERRORS:
            return None
        kind = retry.Kind.RATE_LIMITED if status == 429 else retry.Kind.SERVER_ERROR
        return retry.Transient(kind, f"HTTP {status}",
                               retry.parse_retry_after(outcome.headers.get("Retry-After")))
    if isinstance(outcome, requests.Timeout):
        return retry.Transient(retry.Kind.TIMEOUT, _reason(outcome))
    if isinstance(outcome, requests.exceptions.SSLError) or _unresolvable(outcome):
        return None
    # ChunkedEncodingError: the body broke off midway; a raw reset can escape urllib3's wrapping.
    if isinstance(outcome, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                            ConnectionError)):
        return retry.Transient(retry.Kind.DROPPED, _reason(outcome))
    return None


def _unresolvable(error: object) -> bool:
    """A host name that does not resolve: a typo or a network without that DNS, not a blip."""
    cause = getattr(error.args[0], "reason", None) if isinstance(error, requests.ConnectionError) \
        and error.args else None
    return isinstance(cause, urllib3.exceptions.NameResolutionError)


def _error_codes(response: requests.Response) -> tuple[str, ...]:
    try:
        return tuple(e.get("code", "") for e in response.json().get("errors", []))
    except (ValueError, AttributeError):
        return ()


def _error_text(response: requests.Response) -> str:
    """`: CODE: message; CODE: message` from the registry's error JSON, or a short body."""
    try:
        errors = response.json().get("errors", [])
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
    except (ValueError, AttributeError):
        body = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        parts = [body] if body else []
    # A child manifest or blob list can be long: name the first few.
    shown = parts[:3] + ([f"and {len(parts) - 3} more"] if len(parts) > 3 else [])
    return (": " + "; ".join(shown)) if shown else ""


# What urllib3's nested connection errors mean, in words a release engineer acts on.
_PLAIN_REASONS = (
    (re.compile(r"Failed to resolve '([^']+)'"), "cannot resolve the host name {0}"),
    (re.compile(r"Connection refused"), "connection refused"),
    (re.compile(r"certificate verify failed: ([^'\"()]+)"),
     "its TLS certificate is not trusted ({0}); pass --ca-bundle or install the CA in "
     "/etc/docker/certs.d/<host>/ca.crt"),
    (re.compile(r"timed out"), "timed out"),
)


def _reason(error: Exception) -> str:
    text = str(error)
    for pattern, plain in _PLAIN_REASONS:
        match = pattern.search(text)
        if match:
            return plain.format(*(g.strip() for g in match.groups()))
    # urllib3 wraps the cause in "HTTPConnectionPool(...): Max retries exceeded ... (Caused by X)".
    match = re.search(r"Caused by (.*)\)$", text)
    return (match.group(1) if match else text)[:300]

