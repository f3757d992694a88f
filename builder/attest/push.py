"""The attestation edge: push an image's attestation manifest, and name this tool's version.

The manifest goes into the image's repository by digest, untagged, as BuildKit pushes its own:
only the tag's OCI index refers to it. Its blobs are uploaded without asking first whether the
repository holds them: each statement names the image just pushed, so it cannot hold them
unless this very image was attested before, and then the registry takes the same bytes again.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from builder.attest.statements import AttestationManifest
from builder.model.reference import OCI_MANIFEST
from builder.registry.client import RegistryClient


def push(client: RegistryClient, repository: str, made: AttestationManifest) -> dict:
    """Push `made` into `repository`; its descriptor, for the tag's index."""
    client.upload_blobs(repository, made.blobs, look_first=False)
    client.put_manifest(repository, made.digest, made.body, OCI_MANIFEST)
    return made.descriptor()


@lru_cache(maxsize=1)
def tool() -> tuple[str, str]:
    """(version, git revision) of this tool; the revision is "" outside a git checkout."""
    try:
        version = metadata.version("python-image-builder")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        revision = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return version, revision
