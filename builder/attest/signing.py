"""Signatures with cosign, offline: no transparency log, no certificate authority, a key pair.

`sign` signs each digest a release published (per-arch images, indexes, attestation
manifests) unless it carries a signature already (cosign's ``sha256-<hex>.sig`` tag), so a
no-op release signs nothing again. `verify` checks one digest with the public key. The
password of the private key is cosign's own environment variable, COSIGN_PASSWORD.

cosign reaches the registry as this tool's client does (`access`): plain HTTP only where the
client found no TLS, else TLS verified with the client's CA file (``--registry-cacert``), and
the client's credentials (``BUILDER_REGISTRY_*`` or the Docker config) in a Docker config of
their own, in a private temporary directory that cosign reads through DOCKER_CONFIG and that is
removed when it is done. No secret goes on cosign's command line.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from builder.model.errors import AttestationError, InputError
from builder.model.reference import DOCKER_HUB
from builder.registry.client import RegistryClient
from builder.registry.credentials import DOCKER_HUB_KEY

PASSWORD_VARIABLE = "COSIGN_PASSWORD"
TIMEOUT = 120  # seconds for one cosign call


def cosign() -> str:
    found = shutil.which("cosign")
    if not found:
        raise InputError("cosign is not installed: install Debian's cosign package (trixie or "
                         "later; scripts/setup does) or put cosign on PATH", field="--sign-key")
    return found


@dataclass(frozen=True)
class Access:
    """How cosign reaches one registry: its flags, and its environment (None: this one's)."""
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None


@contextmanager
def access(client: RegistryClient) -> Iterator[Access]:
    """cosign's way into `client`'s registry, the way `client` goes there, while it lasts."""
    if client.plain_http():
        flags: tuple[str, ...] = ("--allow-http-registry", "--allow-insecure-registry")
    else:
        flags = ("--registry-cacert", client.ca_bundle) if client.ca_bundle else ()
    credentials = client.credentials()
    if credentials is None:
        yield Access(flags)
        return
    server = DOCKER_HUB_KEY if client.registry == DOCKER_HUB else client.registry
    pair = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    with tempfile.TemporaryDirectory(prefix="cosign-") as directory:  # mode 0700
        path = os.path.join(directory, "config.json")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            json.dump({"auths": {server: {"auth": pair}}}, file)
        yield Access(flags, {**os.environ, "DOCKER_CONFIG": directory})


def _run(arguments: list[str], reach: Access,
         timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    command, *rest = arguments
    return subprocess.run([cosign(), command, *reach.flags, *rest], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(reach.env) if reach.env is not None else None)


def signed(client: RegistryClient, repository: str, digest: str) -> bool:
    """Whether `digest` carries a cosign signature already."""
    return client.head_manifest(repository, digest.replace(":", "-") + ".sig") is not None


def sign(client: RegistryClient, key: str, references: Iterable[tuple[str, str]]) -> list[str]:
    """Sign each (repository reference, digest) not signed yet, in `client`'s registry; the
    references signed now."""
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
    with access(client) as reach:
        answer = _run(["sign", "--key", key, "--tlog-upload=false", "--yes", *targets], reach,
                      timeout=TIMEOUT + 5 * len(targets))
    if answer.returncode != 0:
        raise AttestationError(f"cosign could not sign {len(targets)} digests ({targets[0]}, "
                               "…): " + " | ".join(answer.stderr.strip().splitlines()[-2:]))
    return targets


def verify(key: str, target: str, reach: Access) -> str | None:
    """None when `target` (name@digest) has a signature the public `key` verifies; else why.
    `reach`: `access` to the target's registry."""
    answer = _run(["verify", "--key", key, "--insecure-ignore-tlog=true", "--offline", target],
                  reach)
    if answer.returncode == 0:
        return None
    lines = [line for line in answer.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"cosign verify exited {answer.returncode}"
