"""Blobs of one registry: read, HEAD, uploaded, mounted from another repository; foreign layers.

Caching. A small blob (a config) by digest, what a HEAD found present in a repository, and what
a foreign layer's URL answered, come from the run's ``DocumentCache`` once read; a layer someone
reads whole is not kept. Uploads. One request per blob (POST for a session, PUT with the
bytes): a retried PUT sends the body again from the start, and an upload whose session the
registry closed after an answer we never saw starts over from a new session.
"""
from __future__ import annotations

import requests

from builder.model.reference import BlobInfo, sha256_digest
from builder.registry.api import Api
from builder.registry.documents import DocumentCache
from builder.registry.errors import NotFound, RegistryError

_CACHED_BLOB_MAX = 4 << 20  # bytes: configs are kept, a layer someone reads whole is not


class Blobs:
    def __init__(self, api: Api, cache: DocumentCache) -> None:
        self.registry = api.registry
        self._api = api
        self._cache = cache

    def get(self, repository: str, digest: str) -> bytes:
        """The blob's bytes; a small one (a config) from the cache once read."""
        return self._cache.get((self.registry, "blob", digest),
                               lambda: self._fetch(repository, digest),
                               keep=lambda data: len(data) <= _CACHED_BLOB_MAX)

    def _fetch(self, repository: str, digest: str) -> bytes:
        what = f"blob {repository}@{digest}"
        data = self._api.call("GET", repository, f"/blobs/{digest}", what).content
        if digest.startswith("sha256:") and sha256_digest(data) != digest:
            raise RegistryError(f"registry {self.registry}: {what} came back with other content "
                                f"({sha256_digest(data)}); the storage is corrupt")
        return data

    def head(self, repository: str, digest: str) -> BlobInfo | None:
        """Size, Last-Modified and Content-Type of a blob in `repository`, or None when it is not
        there; once found there, from the cache."""
        return self._cache.get((self.registry, "blob-head", repository, digest),
                               lambda: self._head(repository, digest),
                               keep=lambda found: found is not None)

    def _head(self, repository: str, digest: str) -> BlobInfo | None:
        try:
            response = self._api.call("HEAD", repository, f"/blobs/{digest}",
                                      f"blob {repository}@{digest}")
        except NotFound:
            return None
        return _blob_info(digest, response)

    def upload(self, repository: str, data: bytes, *, look_first: bool = True) -> str:
        """Upload `data` in one request unless the repository has it already (asked first
        unless `look_first` is False); its digest."""
        digest = sha256_digest(data)
        if look_first and self.head(repository, digest):
            return digest
        what = f"blob upload to {repository}"
        for _ in range(self._api.session.policy.attempts):
            started = self._api.call("POST", repository, "/blobs/uploads/", what, push=True,
                                     ok=(202,))
            location = self._api.upload_location(started, what)
            separator = "&" if "?" in location else "?"
            try:
                self._api.call("PUT", repository, location + f"{separator}digest={digest}", what,
                               push=True, headers={"Content-Type": "application/octet-stream"},
                               data=data, ok=(201,))
                return digest
            except NotFound as error:
                # The session is gone: a retried PUT whose first try the registry took (the
                # answer lost on the way), or an expired session. Landed, or start over.
                if "BLOB_UPLOAD_UNKNOWN" not in error.codes:
                    raise
                if self.head(repository, digest):
                    return digest
                gone = error
        raise gone

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry could not mount it (blob unknown
        there, or not allowed), in which case the upload session it opened is cancelled."""
        what = f"mount of {digest} from {from_repository} into {repository}"
        response = self._api.call("POST", repository,
                                  f"/blobs/uploads/?mount={digest}&from={from_repository}", what,
                                  push=True, also_pull=from_repository, ok=(201, 202))
        if response.status_code == 201:
            return True
        location = self._api.upload_location(response, what)
        try:
            self._api.call("DELETE", repository, location, what, push=True, ok=(204, 404))
        except RegistryError:
            pass  # an abandoned upload session expires on its own; the mount result stands
        return False

    def head_url(self, url: str, digest: str) -> BlobInfo | None:
        """What a HEAD on foreign layer `digest`'s URL says (redirects followed), or None on an
        error status; once answered, from the cache. Unreachable hosts raise RegistryError."""
        def ask() -> BlobInfo | None:
            response = self._api.session.send("HEAD", url, f"foreign layer {url}", {}, None,
                                              allow_redirects=True)
            return None if response.status_code >= 400 else _blob_info(digest, response)

        return self._cache.get(("url-head", url), ask, keep=lambda found: found is not None)


def _blob_info(digest: str, response: requests.Response) -> BlobInfo:
    size = response.headers.get("Content-Length")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return BlobInfo(digest, int(size) if size is not None and size.isdigit() else None,
                    response.headers.get("Last-Modified"), media_type or None)
