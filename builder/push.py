"""Stage 2c: push one per-arch image, and ask the registry what it already holds.

Push errors arrive inside the stream, never as exceptions (libs-trial §1): any `error`
key fails the push. The digest comes from the stream's `aux.Digest` and is then confirmed
with the registry itself, so a reported digest is one the registry really serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .auth import credentials_for
from .errors import BuilderError
from .platforms import Platform
from .plan import BuildJob
from .registry import ImageRef, NotFound, RegistryClient


@dataclass(frozen=True)
class PushedImage:
    job: BuildJob
    reference: ImageRef
    digest: str
    size: int
    platform: Platform


def push_image(api, job: BuildJob, registry: RegistryClient,
               log: Callable[[str], None] = lambda line: None) -> PushedImage:
    """Push the job's tagged image with `api` (a docker APIClient); BuilderError on any failure."""
    ref = job.image
    digest = size = None
    for chunk in api.push(ref.familiar_repository, tag=ref.tag, stream=True, decode=True,
                          auth_config=auth_config(ref.registry)):
        if "error" in chunk:
            raise BuilderError(f"{job.key}: pushing {ref} failed: {chunk['error'].strip()}")
        aux = chunk.get("aux") or {}
        if aux.get("Digest"):
            digest, size = aux["Digest"], aux.get("Size")
        log(_push_line(chunk))
    if not digest:
        raise BuilderError(f"{job.key}: pushing {ref} ended without a digest from the engine")
    found = registry.head_manifest(ref.repository, ref.tag)
    if found is None or found.digest != digest:
        seen = found.digest if found else "nothing"
        raise BuilderError(f"{job.key}: the engine pushed {ref} as {digest}, but the registry "
                           f"serves {seen} there; another push raced this one, run again")
    return PushedImage(job, ref, digest, size or found.size, job.platform)


def auth_config(registry_host: str) -> dict | None:
    """Credentials for the engine to use with `registry_host`, passed per call (libs-trial §5:
    the SDK reads the Docker config once, so a later `docker login` would go unseen)."""
    credentials = credentials_for(registry_host)
    if credentials is None:
        return None
    return {"username": credentials.username, "password": credentials.password}


def registered(registry: RegistryClient, ref: ImageRef, label: str) -> tuple[str, str] | None:
    """(digest, value of `label`) of the image the registry holds at `ref`, or None if none."""
    try:
        manifest = registry.get_manifest(ref.repository, ref.tag)
    except NotFound:
        return None
    if manifest.is_list:
        return None
    config = registry.get_config(ref.repository, manifest)
    labels = (config.get("config") or {}).get("Labels") or {}
    return manifest.digest, labels.get(label, "")


def _push_line(chunk: dict) -> str:
    parts = [chunk.get("id", ""), chunk.get("status", ""), chunk.get("progress", "")]
    if chunk.get("aux"):
        parts.append(str(chunk["aux"]))
    return " ".join(p for p in parts if p)
