"""Signatures in cosign's format, made here; checked by cosign, offline: no transparency log,
no certificate authority, a key pair.

`open_key` opens the private key (cosign's, from `cosign generate-key-pair`) with the password
in COSIGN_PASSWORD, cosign's own variable: at once as far as the file goes, the key derivation
in a thread while the release plans and probes, so that a wrong password stops the release
before anything is built. `start` signs each digest a release publishes (per-arch images, indexes,
attestation manifests) unless it carries a signature already (its ``sha256-<hex>.sig`` tag), so
a no-op release signs nothing again, and returns while the signatures are pushed through the
release's registry client (`Signing`: wait for them, or stop them). The signatures are made as
cosign makes them (`builder.attest.signatures`) rather than by running `cosign sign`: its runs
cost a process, a key derivation and a dozen requests a digest, more than the whole budget of
a release of the example family (bench/attest_cost.py); here the key is opened once, and a
signature is a sign call and its three documents.

`verify` checks one digest with the public key by running cosign, the independent reader.
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
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from builder.attest import signatures
from builder.attest.signatures import KeyUnusable
from builder.model.errors import AttestationError, InputError
from builder.model.reference import DOCKER_HUB, OCI_MANIFEST
from builder.registry.client import RegistryClient, RegistryError
from builder.registry.credentials import DOCKER_HUB_KEY

PASSWORD_VARIABLE = "COSIGN_PASSWORD"
TIMEOUT = 120  # seconds for one cosign verify
# Signatures pushed at once: half the registry client's default limit, which publish shares.
SIGNERS = 4


@dataclass(frozen=True)
class SigningKey:
    """A private key, opened: its file, and the key."""
    path: str
    key: ec.EllipticCurvePrivateKey

    def sign(self, data: bytes) -> bytes:
        """ECDSA over SHA-256, DER-encoded, as cosign signs a payload."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def open_key(path: str) -> Future[SigningKey]:
    """The private key in the file `path`, being opened with COSIGN_PASSWORD: what can be
    checked at once is (no file, no password, not a cosign key: InputError now); the key
    derivation (scrypt, a sixth of a second of a CPU, which lets other threads run) goes on in a
    thread of its own, and the future's result is the key, or the InputError of a password
    that does not open it."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", field="--sign-key") from None
    except (OSError, UnicodeDecodeError) as error:
        raise _refused(path, f"cannot be read ({error})") from None
    if PASSWORD_VARIABLE not in os.environ:
        raise InputError(f"set {PASSWORD_VARIABLE} to the password of {path} (empty if it has "
                         "none)", field="--sign-key")
    try:
        sealed = signatures.sealed_key(text)
    except KeyUnusable as error:
        raise _refused(path, str(error)) from None
    opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sign-key")
    try:
        return opener.submit(_unseal, path, sealed, os.environ[PASSWORD_VARIABLE].encode())
    finally:
        opener.shutdown(wait=False)


def _unseal(path: str, sealed: signatures.SealedKey, password: bytes) -> SigningKey:
    try:
        secret = sealed.secret(password)
    except (ValueError, MemoryError) as error:  # parameters OpenSSL's scrypt refuses
        raise _refused(path, f"its scrypt parameters cannot be used ({error})") from None
    try:
        der = SecretBox(secret).decrypt(sealed.ciphertext, sealed.nonce)
    except CryptoError:
        raise _refused(path, f"{PASSWORD_VARIABLE} does not open it: set the password the key "
                             "was made with") from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as error:
        raise _refused(path, f"its sealed key is not a private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _refused(path, f"holds a {type(key).__name__}, not the ECDSA key cosign makes")
    return SigningKey(path, key)


def _refused(path: str, why: str) -> InputError:
    return InputError(why, source=path, field="--sign-key")


def cosign() -> str:
    found = shutil.which("cosign")
    if not found:
        raise InputError("cosign is not installed: install Debian's cosign package (trixie or "
                         "later; scripts/setup does) or put cosign on PATH", field="--key")
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
    return client.head_manifest(repository, signatures.tag(digest)) is not None


def sign(client: RegistryClient, key: SigningKey, name: str, digest: str) -> bool:
    """Sign `digest` in `name` (host/repository) unless it carries a signature already; whether
    it was signed now. The manifest goes last: a signature tag is only ever whole."""
    repository = _repository(name)
    if signed(client, repository, digest):
        return False
    made = signatures.signature_image(name, digest, key.sign(signatures.payload(name, digest)))
    # new: the payload names the digest, which has no signature yet
    client.upload_blobs(repository, made.blobs, look_first=False)
    client.put_manifest(repository, made.tag, made.manifest, OCI_MANIFEST)
    return True


class Signing:
    """Signatures under way (`start`, `add`): `wait` for them, or `stop` those not begun."""

    def __init__(self, client: RegistryClient, key: SigningKey) -> None:
        self.references: frozenset[tuple[str, str]] = frozenset()  # every one asked for
        self.running: dict[str, Future] = {}  # name@digest → whether it was signed now
        self._client, self._key = client, key
        self._pool = ThreadPoolExecutor(max_workers=SIGNERS, thread_name_prefix="sign")
        self._lock = threading.Lock()  # jobs' threads add as each job ends
        self._stopped = False

    def __enter__(self) -> Signing:
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def add(self, references: Iterable[tuple[str, str]]) -> None:
        """Sign these too (name: host/repository, digest), each not asked for before; none
        once stopped."""
        with self._lock:
            for name, digest in references:
                if (name, digest) in self.references or self._stopped:
                    continue
                self.references = self.references | {(name, digest)}
                self.running[f"{name}@{digest}"] = self._pool.submit(
                    sign, self._client, self._key, name, digest)

    def wait(self) -> list[str]:
        """The targets signed now; AttestationError naming the first that failed."""
        with self._lock:
            running = dict(self.running)
        done, failed = [], []
        for target, future in running.items():
            try:
                if future.result():
                    done.append(target)
            except RegistryError as error:
                failed.append((target, error))
        self.stop()
        if failed:
            target, why = failed[0]
            raise AttestationError(f"could not sign {len(failed)} of {len(running)} digests "
                                   f"({target}, …): {why}")
        return done

    def stop(self) -> None:
        """Push no signature not begun yet (a stage failed or was interrupted); one begun ends
        whole, as its manifest goes last."""
        with self._lock:
            self._stopped = True
            self._pool.shutdown(wait=False, cancel_futures=True)


def start(client: RegistryClient, key: SigningKey,
          references: Iterable[tuple[str, str]] = ()) -> Signing:
    """Start signing each (name: host/repository, digest) not signed yet, in `client`'s
    registry, a few at once; more may be `add`ed."""
    signing = Signing(client, key)
    signing.add(references)
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
