"""Throwaway containers of an image, network off: run a script in one (`run_once`: a smoke
test), or read the image's files through one that is created and never started (`created`,
`read_file`, `stat`), which costs no process and, for a foreign platform, no emulation.

A created container's filesystem is the engine's archive endpoint's to read: a GET gives a
path as a tar, a HEAD its stat alone (in a header); 404 means the image has no such path. The
engine resolves a symlink in the container's own root and names where it ends (`linkTarget`).
"""
from __future__ import annotations

import io
import tarfile
from contextlib import contextmanager
from typing import Iterator, Sequence

import requests
from docker.errors import DockerException, NotFound
from docker.utils import decode_json_header

from builder.model.platforms import Platform

_STAT_HEADER = "X-Docker-Container-Path-Stat"


@contextmanager
def created(api, image_id: str, command: Sequence[str], platform: Platform) -> Iterator[str]:
    """The id of a container of `image_id` that would run `command` (no entrypoint, network
    disabled), created, not started; removed afterwards. The engine's errors are raised."""
    container = api.create_container(image_id, command=list(command), entrypoint=[],
                                     network_disabled=True, platform=platform.oci)["Id"]
    try:
        yield container
    finally:
        try:
            api.remove_container(container, force=True)
        except (DockerException, requests.RequestException):
            pass  # a container left behind costs disk, not correctness


def run(api, container: str, timeout: int, *, stderr: bool = True) -> tuple[int, str]:
    """Start the created `container` and wait for it; (exit code, output)."""
    api.start(container)
    exit_code = api.wait(container, timeout=timeout)["StatusCode"]
    return exit_code, api.logs(container, stdout=True, stderr=stderr).decode("utf-8", "replace")


def run_once(api, image_id: str, script: str, platform: Platform, timeout: int, *,
             stderr: bool = True) -> tuple[int, str]:
    """Run `script` with /bin/sh in a fresh container of `image_id`, network disabled, and
    remove it; (exit code, output). The engine's errors are raised, the container removed."""
    with created(api, image_id, ["/bin/sh", "-c", script], platform) as container:
        return run(api, container, timeout, stderr=stderr)


def read_file(api, container: str, path: str, *, follow: bool = True) -> bytes | None:
    """What the file at `path` in `container` holds, a symlink followed; None when no file
    is there (nothing, a dangling link, a directory)."""
    try:
        chunks, found = api.get_archive(container, path)
        data = b"".join(chunks)
    except NotFound:
        return None
    target = (found or {}).get("linkTarget")
    if target:  # the tar holds the link alone; the engine has resolved it to its end
        return read_file(api, container, target, follow=False) if follow else None
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        content = archive.extractfile(member) if member is not None and member.isfile() else None
        return content.read() if content is not None else None


def stat(api, container: str, path: str, *, follow: bool = True) -> dict | None:
    """The engine's stat of `path` in `container` (name, size, mode: Go's os.FileMode,
    linkTarget), of the file a symlink ends at, as os.stat; None if there is none. docker-py
    wraps the archive endpoint's GET only, so the HEAD is asked with its own session."""
    answer = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
    if answer.status_code == 404:
        return None
    api._raise_for_status(answer)
    found = decode_json_header(answer.headers[_STAT_HEADER])
    if found.get("linkTarget") and follow:
        return stat(api, container, found["linkTarget"], follow=False)
    return found
