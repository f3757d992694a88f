"""The registry documents one run has read, so that every stage reads each of them once.

Manifests and blobs are content-addressed: the bytes under a digest never change, so whatever
one stage read (the build stage's skip check, publish, the summary pages) serves the others.
Content is kept by (registry, digest). Presence is another matter: a blob or manifest that
exists in one repository need not exist in another (a push or a mount puts it there), so what
a HEAD said is kept by (registry, repository, digest). Only what exists is kept: a 404 can
turn into a 200 later in the run (publish copies images in), never the reverse.

Pure: no HTTP here; `builder.registry.client.RegistryClient` asks the cache before the registry.
Thread-safe, and single-flight: when several threads want the same missing value at once
(pages fetched side by side share layers), one of them fetches it and the others wait for it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CacheCounts:
    """How often the cache answered (hits) and how often it had to ask (misses)."""
    hits: int
    misses: int


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class DocumentCache:
    """Values by key, fetched at most once while the cache lives (one `invoke release` run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, object] = {}
        self._pending: dict[Hashable, _Pending] = {}
        self._hits = self._misses = 0

    def get(self, key: Hashable, fetch: Callable[[], T], *,
            keep: Callable[[T], bool] = lambda value: True) -> T:
        """The value under `key`, fetched with `fetch()` by the first thread to ask.

        Threads asking meanwhile get the same value or the same error. A value `keep` refuses
        (None for "does not exist") is handed to them but not kept, so a later ask fetches again.
        """
        with self._lock:
            if key in self._values:
                self._hits += 1
                return self._values[key]  # type: ignore[return-value]
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self._misses += 1
            else:
                self._hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.value  # type: ignore[return-value]
        try:
            pending.value = fetch()
        except BaseException as error:
            pending.error = error
            raise
        finally:
            with self._lock:
                del self._pending[key]
                if pending.error is None and keep(pending.value):
                    self._values[key] = pending.value
            pending.done.set()
        return pending.value

    def put(self, key: Hashable, value: object) -> None:
        """Keep a value this run learnt without asking (a manifest it wrote, a blob it uploaded)."""
        with self._lock:
            self._values[key] = value

    def counts(self) -> CacheCounts:
        with self._lock:
            return CacheCounts(self._hits, self._misses)
