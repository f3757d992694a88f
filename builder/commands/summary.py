"""`summary`: the page of each image as its registry serves it now, printed or written under
--out; release gives it every tag it published, with the digest it published it at.

A tag the registry does not have is an error (exit 1, one line), not a page saying so: a
pipeline that asks for the page of a tag it expects gets told.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, TextIO

from builder.model.errors import EXIT_FAILED, EXIT_OK
from builder.model.reference import ImageRef
from builder.model.report import Report, Status
from builder.registry.client import DEFAULT_CONCURRENCY, Registries, RegistryClient
from builder.summary.fetch import fetch, write_page
from builder.summary.page import TagDocuments, render

_PAGE_WORKERS = 4  # pages fetch concurrently themselves; a few at once keeps the registry calm


@dataclass(frozen=True)
class SummaryOptions:
    """`summary`'s options (one image); `release` gives every tag it published."""
    images: tuple[str, ...]  # image references: python:latest, 127.0.0.1:5000/python:3.8.0
    out: str | None = None  # write <out>/<repository>/remote/<tag>.md; None: print the pages
    ca_bundle: str | None = None
    # The digest each image reference was published at in this run (release): its page is
    # that document, read from the run's cache, without asking for the tag again.
    digests: Mapping[str, str] = field(default_factory=dict)
    registry_concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class SummaryResult:
    pages: tuple[tuple[ImageRef, Path | None], ...]  # (image, its file; None when printed)
    missing: tuple[ImageRef, ...] = ()  # tags the registry does not have: no page

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.missing else EXIT_OK

    def add_to(self, report: Report) -> None:
        for ref, path in self.pages:
            report.summaries.append({"tag": ref.tag, "reference": str(ref), "path": str(path)})
        if self.missing:
            report.stage("summary", Status.FAILED, pages=len(self.pages),
                         missing=[str(ref) for ref in self.missing],
                         reason=f"no such tag: {', '.join(str(ref) for ref in self.missing)}")
        else:
            report.stage("summary", Status.OK, pages=len(self.pages))


def run(options: SummaryOptions, out: TextIO, *,
        registries: Registries | None = None) -> SummaryResult:
    """Each page on `out`, or written under `options.out` and its path on `out`; each missing
    tag one line on stderr. `registries` are the run's clients when the caller has them (the
    release's, whose cache holds what publish read and wrote)."""
    registries = registries or Registries(concurrency=options.registry_concurrency)
    refs = [ImageRef.parse(text) for text in options.images]

    def client(ref: ImageRef) -> RegistryClient:
        return registries.client(ref.registry, ca_bundle=options.ca_bundle)

    # One fetch per published digest: its tags' pages differ only in the heading. Per
    # repository, since its layer HEADs say what that repository holds.
    shared: dict[tuple[str, str, str], ImageRef] = {}
    for text, ref in zip(options.images, refs):
        if text in options.digests:
            shared.setdefault((ref.registry, ref.repository, options.digests[text]), ref)

    def documents(text: str, ref: ImageRef) -> TagDocuments:
        digest = options.digests.get(text)
        if digest is None:
            return fetch(ref, client(ref))
        first = shared[(ref.registry, ref.repository, digest)]
        return replace(fetched[first], name=str(ref), repository=ref.familiar_repository)

    with ThreadPoolExecutor(max_workers=_PAGE_WORKERS) as pool:
        fetched = dict(zip(shared.values(), pool.map(
            lambda item: fetch(item[1], client(item[1]), digest=item[0][2]), shared.items())))
        tags = list(pool.map(lambda pair: documents(*pair), zip(options.images, refs)))
    missing = tuple(ref for ref, tag in zip(refs, tags) if tag.top is None)
    for ref in missing:
        print(f"error: {ref}: no such tag in {ref.registry}", file=sys.stderr)
    pages = []
    for ref, tag in zip(refs, tags):
        if tag.top is None:
            continue
        page = render(tag)
        path = None if options.out is None else write_page(ref, page, options.out)
        if path is None:
            out.write(page)
        else:
            print(path, file=out)
        pages.append((ref, path))
    return SummaryResult(tuple(pages), missing)
