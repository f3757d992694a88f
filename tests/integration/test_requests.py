"""Registry requests per run: each document read once, one limit per registry, and a
no-op re-release that asks for little more than the documents it needs.

The counts come from a counting reverse proxy (testbed/countproxy.py) in front of a real
registry: what the client does not send, the proxy does not see.
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builder.commands import release
from builder.commands import summary
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, sha256_digest
from builder.registry.client import Registries, RegistryClient
from builder.model.report import Status
from builder.model.streams import null
from tests.helpers.builders import write_builders
from tests.helpers.families import tiny_family
from testbed.countproxy import CountingProxy

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


# --- the cache, pure -------------------------------------------------------------------------


# --- against a registry, through the counting proxy ------------------------------------------

@pytest.fixture
def proxy(registry):
    with CountingProxy(registry.url) as counting:
        yield counting


def _push_image(client: RegistryClient, repository: str, tag: str, text: str) -> str:
    layer = client.upload_blob(repository, text.encode())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "history": [{"created": "2026-01-01T00:00:00Z",
                                      "created_by": f"/bin/sh -c echo {text}"}]}).encode()
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": CONFIG_TYPE, "size": len(config),
                           "digest": client.upload_blob(repository, config)},
                "layers": [{"mediaType": LAYER_TYPE, "size": len(text), "digest": layer}]}
    return client.put_manifest(repository, tag, json.dumps(manifest).encode(), DOCKER_MANIFEST)


def test_documents_by_digest_are_read_once_tags_every_time_presence_per_repository(proxy):
    client = Registries().client(proxy.host)
    digest = _push_image(client, "requests/one", "1.0", "one")
    layer = client.get_manifest("requests/one", digest).json["layers"][0]["digest"]
    fresh = Registries().client(proxy.host)  # nothing of the push in its cache
    fresh.get_manifest("requests/one", "1.0")
    proxy.take()

    for _ in range(3):
        assert fresh.get_manifest("requests/one", digest).digest == digest
        assert fresh.get_config("requests/one", fresh.get_manifest("requests/one", digest))["os"] == "linux"
        assert fresh.head_blob("requests/one", layer).size == 3
        fresh.get_manifest("requests/one", "1.0")
    counts = proxy.take()
    # The manifest came with the tag's GET; the config and the layer HEAD once; the tag each time.
    assert counts.count("manifest", "GET") == 3
    assert counts.count("blob", "GET") == 1
    assert counts.count("blob", "HEAD") == 1
    assert counts.total == 5

    # Another repository may not hold the blob: it is asked, and its absence is not kept.
    assert fresh.head_blob("requests/two", layer) is None
    assert fresh.head_blob("requests/two", layer) is None
    assert proxy.take().count("blob", "HEAD") == 2


def test_head_first_asks_only_for_the_digest_of_a_document_already_read(proxy):
    client = Registries().client(proxy.host)
    _push_image(client, "requests/head", "1.0", "head")
    proxy.take()

    client.get_manifest("requests/head", "1.0", head_first=True)
    client.get_manifest("requests/head", "1.0", head_first=True)

    counts = proxy.take()
    assert counts.count("manifest", "HEAD") == 2
    assert counts.count("manifest", "GET") == 0  # the body is the one the push left in the cache


def test_the_limit_holds_however_many_threads_ask(proxy):
    """16 threads on one client with a limit of 2: the proxy never sees more than 2 requests at
    once. It holds each request a moment, so that without the limit they would pile up."""
    proxy.latency = 0.05
    client = Registries(concurrency=2).client(proxy.host)
    client.head_blob("requests/limit", "sha256:" + "0" * 64)  # the /v2/ ping, out of the way
    proxy.take()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: client.head_blob("requests/limit", sha256_digest(b"%d" % n)),
                      range(32)))

    counts = proxy.take()
    assert counts.count("blob", "HEAD") == 32
    assert counts.max_in_flight <= 2


def test_tags_at_one_digest_share_one_fetch_and_the_pages_differ_only_in_the_heading(proxy, tmp_path):
    client = Registries().client(proxy.host)
    entries = []
    for n, (arch, variant) in enumerate((("amd64", None), ("arm64", "v8"))):
        digest = _push_image(client, "requests/pages", f"1.0-{arch}", f"layer {n}")
        child = client.get_manifest("requests/pages", digest)
        entries.append({"mediaType": child.media_type, "size": child.size, "digest": digest,
                        "platform": {"architecture": arch, "os": "linux",
                                     **({"variant": variant} if variant else {})}})
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    tags = ("1.0.0", "1.0", "1", "latest")
    for tag in tags:
        list_digest = client.put_manifest("requests/pages", tag, body, DOCKER_LIST)
    references = tuple(f"{proxy.host}/requests/pages:{tag}" for tag in tags)

    cold = Registries()  # as `invoke summary` starts: nothing read yet, digests known
    proxy.take()
    result = summary.run(summary.SummaryOptions(references, str(tmp_path),
                                                digests=dict.fromkeys(references, list_digest)),
                         null(), registries=cold)

    counts = proxy.take()
    # One list, two image manifests, two configs, two layer HEADs (and the /v2/ ping): once,
    # for four pages.
    assert (counts.count("manifest", "GET"), counts.count("blob", "GET"),
            counts.count("blob", "HEAD"), counts.total) == (3, 2, 2, 8)
    pages = [path.read_text() for _, path in result.pages]
    first = pages[0].replace(references[0], "REF")
    assert all(page.replace(reference, "REF") == first for page, reference in zip(pages, references))
    assert pages[0].count(f"`{references[0]}`") == 3  # the heading and each image's


def test_a_noop_re_release_asks_for_little_more_than_the_documents_it_needs(
        tmp_path, registry, mirror, proxy):
    """Released once, then again with nothing changed: no build, no upload, no manifest PUT, and
    at most 1.2 requests per distinct document read (bench/noop_release.py times it too)."""
    versions_path = tiny_family(tmp_path / "tiny", "tiny-noop", generate=True)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", ("amd64", "i386")))
    options = release.ReleaseOptions(
        "1.0.0", proxy.host, variants=("busybox", "slim-busybox"), platforms=("amd64", "i386"),
        builders=str(builders), versions=str(versions_path), out=str(tmp_path / "out"),
        logs=str(tmp_path / "logs"))
    first = release.run(options, out=io.StringIO())
    assert first.exit_code == 0, first.report.stages
    proxy.take()

    again = release.run(options, out=io.StringIO())

    counts = proxy.take()
    assert again.exit_code == 0, again.report.stages
    assert {job["status"] for job in again.report.jobs} == {Status.SKIPPED.value}
    assert {tag["status"] for tag in again.report.tags} == {Status.UNCHANGED.value}
    assert counts.blob_uploads == 0 and counts.count("upload", "POST") == 0
    assert counts.count("manifest", "PUT") == 0
    assert counts.documents > 0
    assert counts.total <= 1.2 * counts.documents, counts.describe()
    assert len(list(Path(tmp_path / "out").rglob("*.md"))) == len(again.report.tags)
