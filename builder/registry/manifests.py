"""Manifests of one registry: read (by tag, by digest, HEAD first), written, resolved to a platform.

Caching. A manifest by digest, and what a HEAD found present in a repository, come from the
run's ``DocumentCache`` once read (``builder.registry.documents``). A tag is never cached: it
moves. Every manifest read or written is checked against its digest: the exact bytes are what
descriptors and digests are computed from.
"""
from __future__ import annotations

import json

import requests

from builder.model.platforms import Platform, image_platform, oci_text, version_key
from builder.model.reference import (ACCEPT_ALL, IMAGE_TYPES, Descriptor, ImageRef, Manifest,
                                     config_problem, manifest_kind, sha256_digest)
from builder.registry.api import Api
from builder.registry.blobs import Blobs
from builder.registry.documents import DocumentCache
from builder.registry.errors import BadDocument, NotFound, RegistryError


class Manifests:
    def __init__(self, api: Api, blobs: Blobs, cache: DocumentCache) -> None:
        self.registry = api.registry
        self._api = api
        self._blobs = blobs
        self._cache = cache

    def get(self, repository: str, reference: str, accept: tuple[str, ...] = ACCEPT_ALL, *,
            head_first: bool = False) -> Manifest:
        """The manifest at a tag or digest. By digest it comes from the cache once read.

        `head_first`, for a tag whose document this run has likely read already: a HEAD for
        the digest (Docker Hub does not count HEADs against its pull limit), then the body by
        that digest, from the cache when it is there.
        """
        if accept != ACCEPT_ALL:  # another rendering of a tag: not what the cache holds
            return self._fetch(repository, reference, accept)
        if head_first and not _is_digest(reference):
            digest = self._head(repository, reference).headers.get("Docker-Content-Digest")
            reference = digest if digest and _is_digest(digest) else reference
        if not _is_digest(reference):
            manifest = self._fetch(repository, reference, accept)
            self.remember(repository, manifest)
            return manifest

        def fetch() -> Manifest:
            manifest = self._fetch(repository, reference, accept)
            self._present(repository, manifest)
            return manifest

        # Content only: read from another repository it says nothing of this one's.
        return self._cache.get((self.registry, "manifest", reference), fetch)

    def remember(self, repository: str, manifest: Manifest) -> None:
        """Keep a manifest this run holds and `repository` has (read by tag, written, or
        assembled and found there): its bytes are its digest's, whoever asks."""
        self._cache.put((self.registry, "manifest", manifest.digest), manifest)
        self._present(repository, manifest)

    def _present(self, repository: str, manifest: Manifest) -> None:
        self._cache.put((self.registry, "manifest-head", repository, manifest.digest),
                        Descriptor(manifest.media_type, manifest.digest, manifest.size))

    def _fetch(self, repository: str, reference: str, accept: tuple[str, ...]) -> Manifest:
        what = f"manifest {repository}{_at(reference)}"
        response = self._api.call("GET", repository, f"/manifests/{reference}", what,
                                  headers={"Accept": ", ".join(accept)})
        body = response.content
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise BadDocument(f"registry {self.registry}: {what} came back with digest "
                              f"{digest}; the registry or a proxy altered it")
        # By tag, the registry's word for the digest is checked too: a cache or proxy that
        # serves other bytes under it would have the run trust a digest that holds nothing.
        answered = response.headers.get("Docker-Content-Digest", "")
        if answered.startswith("sha256:") and answered != digest:
            raise BadDocument(f"registry {self.registry}: {what} is served as {answered}, but "
                              f"its body hashes to {digest}; a cache or proxy before the "
                              "registry altered it")
        declared = response.headers.get("Content-Type", "").split(";")[0].strip()
        media_type, problem = manifest_kind(declared, body)
        if problem:
            raise BadDocument(f"registry {self.registry}: {what}: {problem}; the registry or a "
                              "proxy before it does not serve that manifest as pushed")
        return Manifest(media_type, digest, body)

    def head(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor as the registry reports it, or None when it does not exist.
        By digest, once found present in `repository`, from the cache."""
        if _is_digest(reference):
            return self._cache.get((self.registry, "manifest-head", repository, reference),
                                   lambda: self._descriptor(repository, reference),
                                   keep=lambda found: found is not None)
        return self._descriptor(repository, reference)

    def _descriptor(self, repository: str, reference: str) -> Descriptor | None:
        try:
            response = self._head(repository, reference)
        except NotFound:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            manifest = self.get(repository, reference)
            return Descriptor(manifest.media_type, manifest.digest, manifest.size)
        return Descriptor(_media_type(response, b""), digest,
                          int(response.headers.get("Content-Length", 0)))

    def _head(self, repository: str, reference: str) -> requests.Response:
        return self._api.call("HEAD", repository, f"/manifests/{reference}",
                              f"manifest {repository}{_at(reference)}",
                              headers={"Accept": ", ".join(ACCEPT_ALL)})

    def put(self, repository: str, reference: str, body: bytes, media_type: str, *,
            restore: bool = False) -> str:
        """PUT the exact bytes; returns their digest, checked against Docker-Content-Digest.
        `restore`: a tag put back to what it held, tried even on a registry refusing writes."""
        what = f"manifest {repository}{_at(reference)}"
        response = self._api.call("PUT", repository, f"/manifests/{reference}", what, push=True,
                                  headers={"Content-Type": media_type}, data=body, ok=(201,),
                                  even_refused=restore)
        digest = sha256_digest(body)
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"registry {self.registry}: {what} stored as {answered}, but the "
                                f"bytes sent hash to {digest}; the registry rewrote the manifest")
        self.remember(repository, Manifest(media_type, digest, body))
        return digest

    def config(self, repository: str, manifest: Manifest) -> dict:
        """The image config (os, architecture, history, …) of an image manifest."""
        document = manifest.json
        if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
            raise BadDocument(f"registry {self.registry}: {repository}@{manifest.digest} is a "
                              f"{manifest.media_type or 'manifest'} without a config")
        digest = document["config"].get("digest")
        config, problem = config_problem(self._blobs.get(repository, digest))
        if problem:
            raise BadDocument(f"registry {self.registry}: config {repository}@{digest}: "
                              f"{problem}; the image is unreadable: push it again")
        return config

    def resolve_platform(self, ref: ImageRef, platform: Platform, *,
                         head_first: bool = False) -> Manifest:
        """The image manifest of `ref` for `platform`: the matching entry of a list or index,
        or the single manifest itself when its config is that platform. `head_first` as for
        `get`."""
        top = self.get(ref.repository, ref.reference, head_first=head_first)
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
            return self.get(ref.repository, entry["digest"])
        if top.media_type not in IMAGE_TYPES:
            raise RegistryError(f"registry {self.registry}: {ref} is a {top.media_type}, "
                                "not an image manifest or a list")
        fields = image_platform(self.config(ref.repository, top))
        if not platform.matches(*fields):
            raise NotFound(f"registry {self.registry}: {ref} is a single "
                           f"{oci_text(*fields[:3])} image, not {platform.oci}; "
                           f"point at a {platform.oci} image or a list")
        return top


def _is_digest(reference: str) -> bool:
    return reference.startswith("sha256:")


def _at(reference: str) -> str:
    return f"@{reference}" if ":" in reference else f":{reference}"


def _media_type(response: requests.Response, body: bytes) -> str:
    declared = response.headers.get("Content-Type", "").split(";")[0].strip()
    if declared and declared not in ("application/json", "application/octet-stream"):
        return declared
    try:
        return json.loads(body).get("mediaType") or declared
    except (ValueError, AttributeError):
        return declared
