"""The request cache: one fetch shared by everyone asking meanwhile, no absence or error kept,
the per-registry limit's bounds."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.registry.documents import DocumentCache
from builder.model.errors import InputError
from builder.registry.client import Registries


def test_the_cache_fetches_once_and_hands_the_value_to_everyone_asking_meanwhile():
    cache, calls = DocumentCache(), []
    asking = threading.Barrier(6)

    def fetch():
        calls.append(1)
        return "document"

    def ask(_):
        asking.wait()  # all six ask together
        return cache.get(("r", "sha256:a"), fetch)

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(ask, range(6))) == ["document"] * 6
    assert len(calls) == 1
    assert cache.counts().misses == 1 and cache.counts().hits == 5


def test_the_cache_keeps_no_absence_and_no_error():
    cache = DocumentCache()
    assert cache.get("k", lambda: None, keep=lambda v: v is not None) is None
    assert cache.get("k", lambda: "pushed since") == "pushed since"

    def fail():
        raise OSError("connection reset")

    with pytest.raises(OSError):
        cache.get("j", fail)
    assert cache.get("j", lambda: "second try") == "second try"


def test_a_limit_below_one_is_bad_input():
    with pytest.raises(InputError, match="--registry-concurrency: 0 requests in flight"):
        Registries(concurrency=0)
