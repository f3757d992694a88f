"""Signatures with cosign, offline: no transparency log, no certificate authority, a key pair.

`sign` signs each digest a release published (per-arch images, indexes, attestation
manifests) unless it carries a signature already (cosign's ``sha256-<hex>.sig`` tag), so a
no-op release signs nothing again. `verify` checks one digest with the public key. The
password of the private key is cosign's own environment variable, COSIGN_PASSWORD.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterable

from builder.model.errors import AttestationError, InputError
from builder.registry.client import RegistryClient

PASSWORD_VARIABLE = "COSIGN_PASSWORD"
TIMEOUT = 120  # seconds for one cosign call


def cosign() -> str:
    found = shutil.which("cosign")
    if not found:
        raise InputError("cosign is not installed: install Debian's cosign package (trixie or "
                         "later; scripts/setup does) or put cosign on PATH", field="--sign-key")
    return found


def _registry_flags(plain_http: bool) -> list[str]:
    return ["--allow-http-registry", "--allow-insecure-registry"] if plain_http else []


def _run(arguments: list[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([cosign(), *arguments], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def signed(client: RegistryClient, repository: str, digest: str) -> bool:
    """Whether `digest` carries a cosign signature already."""
    return client.head_manifest(repository, digest.replace(":", "-") + ".sig") is not None


def sign(client: RegistryClient, key: str, references: Iterable[tuple[str, str]], *,
         plain_http: bool = False) -> list[str]:
    """Sign each (repository reference, digest) not signed yet; the references signed now."""
    if not os.path.isfile(key):
        raise InputError(f"no such file: {key}", field="--sign-key")
    if PASSWORD_VARIABLE not in os.environ:
        raise InputError(f"set {PASSWORD_VARIABLE} to the password of {key} (empty if it has "
                         "none)", field="--sign-key")
    targets = [f"{name}@{digest}" for name, digest in references
               if not signed(client, name.split("/", 1)[1] if "/" in name else name, digest)]
    if not targets:
        return []
    # One cosign for them all: it signs each in turn, without starting again per digest.
    answer = _run(["sign", "--key", key, "--tlog-upload=false", "--yes",
                   *_registry_flags(plain_http), *targets], timeout=TIMEOUT + 5 * len(targets))
    if answer.returncode != 0:
        raise AttestationError(f"cosign could not sign {len(targets)} digests ({targets[0]}, "
                               "…): " + " | ".join(answer.stderr.strip().splitlines()[-2:]))
    return targets


def verify(key: str, target: str, *, plain_http: bool = False) -> str | None:
    """None when `target` (name@digest) has a signature the public `key` verifies; else why."""
    answer = _run(["verify", "--key", key, "--insecure-ignore-tlog=true", "--offline",
                   *_registry_flags(plain_http), target])
    if answer.returncode == 0:
        return None
    lines = [line for line in answer.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"cosign verify exited {answer.returncode}"
