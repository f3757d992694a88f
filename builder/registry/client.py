"""A small client for the Docker Registry HTTP API v2 / OCI distribution API.

Plain ``requests`` (oras-py and python-dxf each fail one of our auth setups: docs/design/libraries.md).
One ``RegistryClient`` per registry host, shared by threads; a run's stages get theirs from one
``Registries``, so they share it. The client composes one part per concern, regclient style:

- `builder.registry.session`: the host's pool and in-flight limit (default 8), https or (for a
  loopback or insecure host) http, every request under the one retry policy and its budget;
- `builder.registry.auth`: the ``/v2/`` challenge, Basic credentials, bearer tokens per scope;
  credentials looked up once, the CI pair only for the run's ``target``;
- `builder.registry.api`: one API call: scopes, Authorization (never to an upload ``Location``
  on another host), one more try after a 401, the answer checked;
- `builder.registry.manifests` and `builder.registry.blobs`: the resources, read through the
  run's ``DocumentCache`` (`builder.registry.documents`); ``Registries`` hands one cache to all
  its clients. A tag is never cached: it moves;
- `builder.registry.errors`: the failures by kind, each a ``RegistryError`` (a ``BuilderError``:
  exit code 1) of one line that names the registry, the repository, the registry's error code
  and message, and what to do.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from builder.model.errors import InputError
from builder.model.platforms import Platform
from builder.model.reference import (ACCEPT_ALL, DOCKER_HUB, DOCKER_HUB_HOSTS, BlobInfo,
                                     Descriptor, ImageRef, Manifest)
from builder.model import retry
from builder.registry.api import Api
from builder.registry.auth import Auth
from builder.registry.blobs import Blobs
from builder.registry.credentials import Credentials
from builder.registry.documents import DocumentCache
from builder.registry.errors import (BadDocument, NotFound, RegistryError, TLSFailed,
                                     Unauthorized)
from builder.registry.manifests import Manifests
from builder.registry.session import Session, transient

__all__ = ["BadDocument", "DEFAULT_CONCURRENCY", "NotFound", "Registries", "RegistryClient", "RegistryError",
           "TLSFailed", "Unauthorized", "transient"]

_DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_CONCURRENCY = 8  # requests in flight per registry: the Docker engine's own default is 3-5


class RegistryClient:
    """One registry host: its session, its auth, its manifests and blobs."""

    def __init__(self, registry: str, *, credentials: Credentials | None = None,
                 target: str | None = None, ca_bundle: str | None = None,
                 insecure: bool = False, policy: retry.Policy = retry.POLICY,
                 timeout: float = 60.0, concurrency: int = DEFAULT_CONCURRENCY,
                 cache: DocumentCache | None = None, deadline: float | None = None) -> None:
        self.registry = DOCKER_HUB if registry in DOCKER_HUB_HOSTS else registry
        self.host = _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        self.policy = policy
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.cache = cache if cache is not None else DocumentCache()
        session = Session(self.registry, self.host, ca_bundle=ca_bundle, insecure=insecure,
                          policy=policy, timeout=timeout, concurrency=self.concurrency,
                          deadline=deadline)
        self._session = session
        self._auth = Auth(session, credentials=credentials, target=target)
        api = Api(session, self._auth)
        self._blobs = Blobs(api, self.cache)
        self._manifests = Manifests(api, self._blobs, self.cache)

    @property
    def refusing(self) -> str | None:
        """Why this registry takes no more writes in this run (it answered one with 507 or
        413, or kept failing one with 5xx past every retry); None while it takes them."""
        return self._session.refusing

    def refuse(self, why: str) -> None:
        """Take no more writes to this registry in this run, for `why` (the first reason kept)."""
        self._session.refuse(why)

    def credentials(self) -> Credentials | None:
        """The credentials this client sends (given, or looked up once), or None: anonymous."""
        return self._auth.credentials()

    @property
    def ca_bundle(self) -> str | None:
        """The CA file TLS to this registry is verified with (--ca-bundle, else Docker's
        certs.d); None: the system's."""
        return self._session.ca_bundle

    def plain_http(self) -> bool:
        """Whether the registry answers over plain HTTP (a loopback or insecure host that has no
        TLS), as the first request found; asks /v2/ if nothing was sent yet."""
        return self._session.base(self._auth.learn).startswith("http://")

    def unanswered(self, timeout: float) -> str | None:
        """Why nothing answers on the registry's port now, in one quick try; None when it does."""
        return self._session.unanswered(timeout)

    # --- manifests (builder.registry.manifests) ---------------------------------------------

    def get_manifest(self, repository: str, reference: str,
                     accept: tuple[str, ...] = ACCEPT_ALL, *, head_first: bool = False) -> Manifest:
        """The manifest at a tag or digest; by digest from the cache once read. `head_first`:
        a HEAD for a tag's digest first, then the body by digest (from the cache if there)."""
        return self._manifests.get(repository, reference, accept, head_first=head_first)

    def remember(self, repository: str, manifest: Manifest) -> None:
        """Keep a manifest this run holds and `repository` has."""
        self._manifests.remember(repository, manifest)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor, or None when it does not exist."""
        return self._manifests.head(repository, reference)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str, *,
                     restore: bool = False) -> str:
        """PUT the exact bytes; returns their digest, checked against Docker-Content-Digest.
        `restore`: putting a tag back, tried even once the registry refuses writes."""
        return self._manifests.put(repository, reference, body, media_type, restore=restore)

    def resolve_platform(self, ref: ImageRef, platform: Platform, *,
                         head_first: bool = False) -> Manifest:
        """The image manifest of `ref` for `platform`: a list's entry, or the single image."""
        return self._manifests.resolve_platform(ref, platform, head_first=head_first)

    def get_config(self, repository: str, manifest: Manifest) -> dict:
        """The image config (os, architecture, history, …) of an image manifest."""
        return self._manifests.config(repository, manifest)

    # --- blobs (builder.registry.blobs) -------------------------------------------------------

    def get_blob(self, repository: str, digest: str) -> bytes:
        """The blob's bytes; a small one (a config) from the cache once read."""
        return self._blobs.get(repository, digest)

    def head_blob(self, repository: str, digest: str) -> BlobInfo | None:
        """Size, Last-Modified and Content-Type of a blob in `repository`, or None."""
        return self._blobs.head(repository, digest)

    def upload_blob(self, repository: str, data: bytes, *, look_first: bool = True) -> str:
        """Upload `data` unless the repository has it already; its digest. `look_first=False`:
        no HEAD first, for a blob that names something new (a signature, a statement about an
        image just pushed), which the repository cannot hold yet."""
        return self._blobs.upload(repository, data, look_first=look_first)

    def upload_blobs(self, repository: str, blobs: Sequence[bytes], *,
                     look_first: bool = True) -> list[str]:
        """`upload_blob` each of `blobs`, all at once (within the client's limit): the few small
        blobs of one document, whose uploads one after another would each wait a round trip
        for the one before; their digests, in order."""
        if len(blobs) < 2:
            return [self.upload_blob(repository, blob, look_first=look_first) for blob in blobs]
        with ThreadPoolExecutor(max_workers=min(len(blobs), self.concurrency),
                                thread_name_prefix="blob") as pool:
            return list(pool.map(
                lambda blob: self.upload_blob(repository, blob, look_first=look_first), blobs))

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry could not mount it."""
        return self._blobs.mount(repository, digest, from_repository)

    def head_url(self, url: str, digest: str) -> BlobInfo | None:
        """What a HEAD on foreign layer `digest`'s URL says, or None on an error status."""
        return self._blobs.head_url(url, digest)


class Registries:
    """The registry clients of one run: one per host (one pool, one limit), one cache for all.

    `ca_bundles` names the CA file of a host (the release registry's --ca-bundle), whichever
    stage asks for that host's client first. `target` is the run's --registry, the one the CI
    credential pair may go to (credentials.credentials_for): one run, one target, so no client
    of this run carries another run's credentials.
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
