"""An image's inventory read on each engine kind (fixture build_engine): its files through the
archive endpoint of a container that is created and never started, unless a Python is on the
image's PATH. busybox for a foreign platform is read without starting anything (so without
QEMU); Debian's SBOM source is what `dpkg-query -W` lists; an image with a `python3` starts
once, to ask it."""
from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from builder.farm import attestations
from builder.model.platforms import platform

# Stands in for CPython: the inventory's Python is asked to print this, once.
FAKE_PYTHON = b"#!/bin/sh\necho '" + json.dumps(
    {"version": "3.14.0", "distributions": [["pip", "25.2"]]}).encode() + b"'\n"


def _started(client, since: float, image_id: str) -> list[dict]:
    """The engine's container start events since `since` for `image_id`."""
    events = client.api.events(since=int(since), until=int(time.time()) + 1, decode=True,
                               filters={"type": "container", "event": "start"})
    return [e for e in events if e.get("from") == image_id
            or e.get("Actor", {}).get("Attributes", {}).get("image") == image_id]


def _read(client, image_id: str, name: str):
    lines = []
    found = attestations.read_inventory(client.api, image_id, platform(name), lines.append)
    return found, lines


def test_busybox_of_a_foreign_platform_is_read_without_starting_a_container(build_engine,
                                                                          mirror):
    client = build_engine.client
    image = client.images.pull(f"{mirror.host}/library/busybox", "arm64v8",
                               platform="linux/arm64")
    since = time.time() - 1
    found, lines = _read(client, image.id, "arm64v8")
    assert (found.manager, found.packages, found.python, found.distributions) \
        == ("", (), None, ())
    assert lines == ["inventory: 0 system packages, 0 Python distributions"]
    assert _started(client, since, image.id) == []


def test_debian_s_inventory_is_what_dpkg_query_lists(build_engine, mirror):
    client = build_engine.client
    image = client.images.pull(f"{mirror.host}/library/debian", "trixie", platform="linux/amd64")
    found, _ = _read(client, image.id, "amd64")
    listed = client.containers.run(image.id, ["dpkg-query", "-W"], remove=True,
                                   entrypoint=[]).decode()
    dpkg = {tuple(line.split("\t")) for line in listed.splitlines()}
    assert len(dpkg) > 50
    assert found.manager == "dpkg"
    assert {(p.name, p.version) for p in found.packages} \
        == {(name.split(":")[0], version) for name, version in dpkg}
    assert found.os_release["VERSION_CODENAME"] == "trixie"  # /etc/os-release is a symlink
    assert found.python is None


@pytest.fixture(scope="module")
def with_python(build_engine, mirror):
    """busybox (amd64) with a `python3` on its PATH."""
    client = build_engine.client
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, data, mode in (
                ("Dockerfile", f"FROM {mirror.host}/library/busybox:amd64\n"
                               "COPY python3 /usr/local/bin/python3\n".encode(), 0o644),
                ("python3", FAKE_PYTHON, 0o755)):
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(data), mode
            archive.addfile(member, io.BytesIO(data))
    client.images.pull(f"{mirror.host}/library/busybox", "amd64", platform="linux/amd64")
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, rm=True,
                                   platform="linux/amd64")
    yield image
    client.images.remove(image.id, force=True)


def test_an_image_with_a_python_starts_once_to_ask_it(build_engine, with_python):
    client = build_engine.client
    since = time.time() - 1
    found, lines = _read(client, with_python.id, "amd64")
    assert found.python == "3.14.0"
    assert [(d.name, d.version) for d in found.distributions] == [("pip", "25.2")]
    assert lines == ["inventory: 0 system packages, 1 Python distributions, Python 3.14.0"]
    assert len(_started(client, since, with_python.id)) == 1
