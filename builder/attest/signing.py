"""Signatures with cosign, offline: no transparency log, no certificate authority, a key pair.

`start` signs each digest a release publishes (per-arch images, indexes, attestation
manifests) unless it carries a signature already (cosign's ``sha256-<hex>.sig`` tag), so a
no-op release signs nothing again, and returns while cosign runs (`Signing`: wait for it, or
stop it). cosign signs its digests one after another, a dozen requests each, so they are
shared among a few cosign runs at once (`shares`). `verify` checks one digest with the public
key. The password of the private key is cosign's own environment variable, COSIGN_PASSWORD.

cosign reaches the registry as this tool's client does (`access`): plain HTTP only where the
client found no TLS, else TLS verified with the client's CA file (``--registry-cacert``), and
the client's credentials (``BUILDER_REGISTRY_*`` or the Docker config) in a Docker config of
their own, in a private temporary directory that cosign reads through DOCKER_CONFIG and that is
removed when it is done. No secret goes on cosign's command line.
"""
from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Iterable, Iterator, Mapping, Sequence

from builder.model.errors import AttestationError, InputError
from builder.model.reference import DOCKER_HUB
from builder.registry.client import RegistryClient
from builder.registry.credentials import DOCKER_HUB_KEY

PASSWORD_VARIABLE = "COSIGN_PASSWORD"
TIMEOUT = 120  # seconds for one cosign call
SIGNERS = 4  # cosign runs at once, at most
# Digests one cosign run signs before another run pays for its start (loading the key).
PER_SIGNER = 8
_LOOKUPS = 8  # signature look-ups in flight (the registry client keeps its own limit too)


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


def _argv(command: str, reach: Access, *rest: str) -> list[str]:
    """cosign's `command` with `reach`'s flags, then `rest`."""
    return [cosign(), command, *reach.flags, *rest]


def _env(reach: Access) -> dict[str, str] | None:
    return dict(reach.env) if reach.env is not None else None


def _run(command: str, reach: Access, *rest: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(command, reach, *rest), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=_env(reach))


def signed(client: RegistryClient, repository: str, digest: str) -> bool:
    """Whether `digest` carries a cosign signature already."""
    return client.head_manifest(repository, digest.replace(":", "-") + ".sig") is not None


def check_key(key: str) -> None:
    """InputError unless the private `key` is a file and its password is set."""
    if not os.path.isfile(key):
        raise InputError(f"no such file: {key}", field="--sign-key")
    if PASSWORD_VARIABLE not in os.environ:
        raise InputError(f"set {PASSWORD_VARIABLE} to the password of {key} (empty if it has "
                         "none)", field="--sign-key")


def shares(targets: Sequence[str], signers: int = SIGNERS,
           per_signer: int = PER_SIGNER) -> list[list[str]]:
    """`targets` shared among the cosign runs that sign them at once: one run per `per_signer`
    targets, `signers` at most, the targets dealt in turn (each run's keep their order)."""
    count = min(signers, math.ceil(len(targets) / per_signer))
    return [list(targets[i::count]) for i in range(count)]


class Signing:
    """cosign runs under way (`start`), each with its share of `targets`: `wait` for them,
    or `stop` them; either ends their `access` to the registry. Their stderr goes to a file,
    which no amount of it can block."""

    def __init__(self, references: Iterable[tuple[str, str]], targets: list[str],
                 reach: ExitStack) -> None:
        self.references = frozenset(references)  # every one asked for, signed before or not
        self.targets = targets  # those being signed now
        # (share, process, its stderr, its deadline) of each run
        self.running: list[tuple[list[str], subprocess.Popen, IO[str], float]] = []
        self._reach = reach

    def __enter__(self) -> Signing:
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def wait(self) -> list[str]:
        """The targets signed; AttestationError naming the first run that failed."""
        failed = [(share, why) for share, *run in self.running
                  if (why := _failure(*run)) is not None]
        self.running = []
        self._reach.close()
        if failed:
            share, why = failed[0]
            raise AttestationError(f"cosign could not sign {sum(len(s) for s, _ in failed)} of "
                                   f"{len(self.targets)} digests ({share[0]}, …): {why}")
        return self.targets

    def stop(self) -> None:
        """End the runs still going (a stage failed or was interrupted); nothing to wait for."""
        for _, process, errors, _ in self.running:
            if process.poll() is None:
                process.kill()
            process.wait()
            errors.close()
        self.running = []
        self._reach.close()


def _failure(process: subprocess.Popen, errors: IO[str], deadline: float) -> str | None:
    """Why a cosign run failed, once it ended (killed at its deadline); None if it did not."""
    try:
        code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    errors.seek(0)
    said = " | ".join(errors.read().strip().splitlines()[-2:])
    errors.close()
    if code is None:
        return f"no end before its deadline ({said or 'nothing said'})"
    return (said or f"exit {code}") if code else None


def start(client: RegistryClient, key: str,
          references: Iterable[tuple[str, str]]) -> Signing:
    """Start signing each (repository reference, digest) not signed yet, in `client`'s
    registry: cosign runs at once, each with a share of them (`shares`)."""
    check_key(key)
    references = list(dict.fromkeys(references))
    with ThreadPoolExecutor(max_workers=_LOOKUPS) as pool:
        before = list(pool.map(lambda pair: signed(client, _repository(pair[0]), pair[1]),
                               references))
    targets = [f"{name}@{digest}" for (name, digest), done in zip(references, before)
               if not done]
    stack = ExitStack()
    signing = Signing(references, targets, stack)
    try:
        reach = stack.enter_context(access(client)) if targets else Access()
        for share in shares(targets):
            errors = tempfile.TemporaryFile("w+")
            signing.running.append((share, subprocess.Popen(
                _argv("sign", reach, "--key", key, "--tlog-upload=false", "--yes", *share),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, text=True,
                env=_env(reach)), errors, time.monotonic() + TIMEOUT + 5 * len(share)))
    except BaseException:
        signing.stop()
        raise
    return signing


def _repository(name: str) -> str:
    """The repository of a reference `name` (host/repository)."""
    return name.split("/", 1)[1] if "/" in name else name


def verify(key: str, target: str, reach: Access) -> str | None:
    """None when `target` (name@digest) has a signature the public `key` verifies; else why.
    `reach`: `access` to the target's registry."""
    answer = _run("verify", reach, "--key", key, "--insecure-ignore-tlog=true", "--offline",
                  target)
    if answer.returncode == 0:
        return None
    lines = [line for line in answer.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"cosign verify exited {answer.returncode}"
