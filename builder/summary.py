"""Stage summary: a tag as its registry serves it now → its page (`<repo>/remote/<tag>.md`).

`fetch` gets the documents with as few dependent round trips as the data allows (top
manifest → every entry manifest at once → every config and layer HEAD at once); the page is
rendered by the pure `builder.summary_page`.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .errors import EXIT_OK, BuilderError
from .files import write_atomic
from .reference import FOREIGN_LAYER_TYPES, IMAGE_TYPES, LIST_TYPES, ImageRef, Manifest
from .registry import NotFound, RegistryClient, RegistryError, Unauthorized
from .report import Report, Status
from .summary_page import BlobHead, Document, ImageDocuments, TagDocuments, page_path, render

_PAGE_WORKERS = 4  # pages fetch concurrently themselves; a few at once keeps the registry calm


def fetch(ref: ImageRef, client: RegistryClient, *, workers: int = 32) -> TagDocuments:
    """The tag's documents in three dependent rounds of requests, whatever the platform count.

    Round 1 the tag's manifest, round 2 every entry manifest of a list, round 3 every config
    and every layer HEAD (each distinct layer and foreign url once). `workers` matches the
    client's connection pool; a round with more requests than that takes a few waves.
    `workers=1` fetches one document at a time, for comparison (bench/summary_fetch.py).
    """
    name, repository = str(ref), ref.familiar_repository
    try:
        top = client.get_manifest(ref.repository, ref.reference)
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
                    heads[layer["digest"]] = pool.submit(_head_url, client, layer["urls"][0])
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
    return BlobHead(size=info.size, last_modified=info.last_modified)


def _head_url(client: RegistryClient, url: str) -> BlobHead:
    # A foreign layer's server (Microsoft's, for Windows bases) is often out of reach of a build
    # network; its Last-Modified is decoration, so the page goes out without that line.
    try:
        return BlobHead(last_modified=client.head_url(url))
    except RegistryError:
        return BlobHead(last_modified=None)


def summarize(client: RegistryClient, ref: ImageRef) -> str:
    """The page of one image reference, as the registry serves it now."""
    return render(fetch(ref, client))


def write_page(client: RegistryClient, ref: ImageRef, out_dir: str | Path) -> Path:
    """Render the page and replace the file atomically, so readers never see half a page."""
    path = page_path(ref, out_dir)
    write_atomic(path, summarize(client, ref))
    return path


@dataclass(frozen=True)
class SummaryOptions:
    """`invoke summary`'s options (one image); `release` gives every tag it published."""
    images: tuple[str, ...]  # image references: python:latest, 127.0.0.1:5000/python:3.8.0
    out: str | None = None  # write <out>/<repository>/remote/<tag>.md; None: print the pages
    ca_bundle: str | None = None


@dataclass(frozen=True)
class SummaryResult:
    pages: tuple[tuple[ImageRef, Path | None], ...]  # (image, its file; None when printed)
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        for ref, path in self.pages:
            report.summaries.append({"tag": ref.tag, "reference": str(ref), "path": str(path)})
        report.stage("summary", Status.OK, pages=len(self.pages))


def run(options: SummaryOptions, out: TextIO | None = sys.stdout, *,
        client: RegistryClient | None = None) -> SummaryResult:
    """`invoke summary`: each page on `out`, or written under `options.out` and its path on
    `out` (None: silent). `client` serves every image when the caller has one for their
    registry; otherwise each image's registry gets its own."""
    refs = [ImageRef.parse(text) for text in options.images]
    clients = {} if client is None else {ref.registry: client for ref in refs}
    for ref in refs:
        clients.setdefault(ref.registry, RegistryClient(ref.registry, ca_bundle=options.ca_bundle))

    def one(ref: ImageRef) -> tuple[ImageRef, Path | None, str | None]:
        if options.out is None:
            return ref, None, summarize(clients[ref.registry], ref)
        return ref, write_page(clients[ref.registry], ref, options.out), None

    with ThreadPoolExecutor(max_workers=_PAGE_WORKERS) as pool:
        done = list(pool.map(one, refs))
    if out is not None:
        for _, path, text in done:
            if text is None:
                print(path, file=out)
            else:
                out.write(text)
    return SummaryResult(tuple((ref, path) for ref, path, _ in done))
