"""Stage summary: a tag as its registry serves it now → its page (`<repo>/remote/<tag>.md`).

`fetch` gets the documents with as few dependent round trips as the data allows (top
manifest → every entry manifest at once → every config and layer HEAD at once); the page is
rendered by the pure `builder.summary.page`. Within a run the client's cache serves what an
earlier stage or page read already, and tags at one digest share one fetch: their pages
differ only in the heading.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.model.errors import BuilderError
from builder.model.files import write_atomic
from builder.model.reference import FOREIGN_LAYER_TYPES, IMAGE_TYPES, LIST_TYPES, ImageRef, Manifest
from builder.registry.client import NotFound, RegistryClient, RegistryError, Unauthorized
from builder.summary.page import BlobHead, Document, ImageDocuments, TagDocuments, page_path, render


def fetch(ref: ImageRef, client: RegistryClient, *, digest: str | None = None,
          workers: int = 32) -> TagDocuments:
    """The tag's documents in three dependent rounds of requests, whatever the platform count.

    Round 1 the tag's manifest, round 2 every entry manifest of a list, round 3 every config
    and every layer HEAD (each distinct layer and foreign url once). `digest`: the tag's
    digest when the caller knows it (the release just published it), read from the cache.
    The client's concurrency limit paces the rounds; `workers=1` fetches one document at a
    time, for comparison (bench/summary_fetch.py).
    """
    name, repository = str(ref), ref.familiar_repository
    try:
        top = client.get_manifest(ref.repository, digest or ref.reference)
    except NotFound:
        return TagDocuments(name, repository, top=None)
    except Unauthorized as error:
        # Docker Hub answers 401, not 404, to an anonymous pull of a repository that does not
        # exist; refused credentials are a real error and stay one.
        if error.status != 401 or client.credentials() is not None:
            raise
        return TagDocuments(name, repository, top=None)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if top.media_type in LIST_TYPES:
            entries = top.json.get("manifests") or []
            manifests = list(pool.map(
                lambda entry: client.get_manifest(ref.repository, entry["digest"]), entries))
            # A list entry without a platform object is shown as linux/amd64, not as a single image.
            platforms = [entry.get("platform") or {} for entry in entries]
        elif top.media_type in IMAGE_TYPES:
            manifests, platforms = [top], [None]
        else:
            raise BuilderError(f"{ref}: the registry serves a {top.media_type!r} manifest; summary "
                               "pages cover Docker v2 and OCI images and lists only")
        for manifest in manifests:
            if manifest.media_type not in IMAGE_TYPES:
                raise BuilderError(f"{ref}: list entry {manifest.digest} is a {manifest.media_type!r}"
                                   " manifest; summary pages cover Docker v2 and OCI images only")
        configs = [pool.submit(client.get_config, ref.repository, m) for m in manifests]
        documents = [_document(m) for m in manifests]
        heads = {}
        for manifest in documents:
            for layer in manifest.json.get("layers") or []:
                if layer["digest"] in heads:
                    continue
                if layer.get("mediaType") not in FOREIGN_LAYER_TYPES:
                    heads[layer["digest"]] = pool.submit(_head_blob, client, ref.repository,
                                                         layer["digest"])
                elif layer.get("urls"):
                    heads[layer["digest"]] = pool.submit(_head_url, client, layer["urls"][0],
                                                         layer["digest"])
        heads = {digest: future.result() for digest, future in heads.items()}
        images = tuple(
            ImageDocuments(manifest=manifest, config=config.result(), platform=platform,
                           heads={layer["digest"]: heads[layer["digest"]]
                                  for layer in manifest.json.get("layers") or []
                                  if layer["digest"] in heads})
            for manifest, config, platform in zip(documents, configs, platforms))
    return TagDocuments(name, repository, top=_document(top), images=images)


def _document(manifest: Manifest) -> Document:
    return Document(manifest.media_type, manifest.digest, manifest.json)


def _head_blob(client: RegistryClient, repository: str, digest: str) -> BlobHead:
    info = client.head_blob(repository, digest)
    if info is None:
        raise BuilderError(f"registry {client.registry}: layer {repository}@{digest} is missing "
                           "although a manifest names it; push the image again")
    return BlobHead(size=info.size, media_type=info.media_type, last_modified=info.last_modified)


def _head_url(client: RegistryClient, url: str, digest: str) -> BlobHead:
    # A foreign layer's server (Microsoft's, for Windows bases) is often out of reach of a build
    # network; its Last-Modified is decoration, so the page goes out without that line (and,
    # for a layer whose manifest gives no size, without a size).
    try:
        info = client.head_url(url, digest)
    except RegistryError:
        return BlobHead()
    if info is None:
        return BlobHead()
    return BlobHead(size=info.size, media_type=info.media_type, last_modified=info.last_modified)


def summarize(client: RegistryClient, ref: ImageRef) -> str:
    """The page of one image reference, as the registry serves it now."""
    return render(fetch(ref, client))


def write_page(ref: ImageRef, page: str, out_dir: str | Path) -> Path:
    """Replace the page's file atomically, so readers never see half a page."""
    path = page_path(ref, out_dir)
    write_atomic(path, page)
    return path
