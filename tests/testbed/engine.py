"""Docker engines of the test bed: the local one, and a second dockerd playing a remote build node."""
from __future__ import annotations

import shutil
from pathlib import Path

import docker
import docker.errors
import requests

CERTS_D = Path("/etc/docker/certs.d")


def local_client() -> docker.DockerClient:
    """docker.from_env(), checked with a ping; raises docker.errors.DockerException when no engine answers."""
    client = docker.from_env(timeout=300)
    client.ping()
    return client


def trust_ca(host: str, ca_cert: Path) -> Path:
    """Make every engine of this machine trust `ca_cert` for `host` (certs.d is read per connection)."""
    directory = CERTS_D / host
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_cert, directory / "ca.crt")
    return directory


def untrust(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def remove_tags_of(client: docker.DockerClient, host: str) -> None:
    """Untag local images that name a registry which is going away, so dead references don't pile up."""
    try:
        images = client.images.list()
    except (docker.errors.DockerException, requests.RequestException):
        return
    for image in images:
        for tag in image.tags:
            if tag.startswith(host + "/"):
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.APIError:
                    pass
