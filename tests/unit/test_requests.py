"""The request cache: one fetch shared by everyone asking meanwhile, no absence or error kept,
the per-registry limit's bounds; a document's blobs uploaded at once; the environment read
once per host."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from builder.registry.documents import DocumentCache
from builder.model.errors import InputError
from builder.registry.client import Registries, RegistryClient
from builder.registry.session import EnvironmentOnce


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


def test_a_document_s_blobs_are_uploaded_at_once_and_their_digests_kept_in_order():
    client = RegistryClient("127.0.0.1:5000")
    together = threading.Barrier(3, timeout=5)  # breaks unless all three are in flight at once

    def upload_blob(repository, data, *, look_first=True):
        together.wait()
        return f"sha256:{data.decode()}"

    client.upload_blob = upload_blob
    assert client.upload_blobs("r", [b"a", b"b", b"c"], look_first=False) == [
        "sha256:a", "sha256:b", "sha256:c"]


def test_the_environment_is_read_once_per_host_and_its_proxy_still_used(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "registry.internal")
    looked = []
    real = requests.utils.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies",
                        lambda url, no_proxy=None: looked.append(url) or real(url, no_proxy))

    class Session(EnvironmentOnce, requests.Session):
        pass

    session = Session()
    for path in ("/v2/", "/v2/r/manifests/1", "/v2/r/blobs/uploads/"):
        settings = session.merge_environment_settings(
            "https://registry.example" + path, {}, None, True, None)
        assert settings["proxies"]["https"] == "http://proxy.example:3128"
    inside = session.merge_environment_settings("https://registry.internal/v2/", {}, None, True,
                                                None)
    assert "https" not in inside["proxies"]  # NO_PROXY holds
    assert len(looked) == 2  # one look per host
