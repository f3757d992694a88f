"""Signing in cosign's format, against a stand-in registry client (its documents kept in
memory) and a key sealed here as `cosign generate-key-pair` seals one (a cheaper scrypt): the
key is opened or refused saying why, each signature is the image cosign pushes and verifies
with the public key, a digest signed before is skipped, a failure names its digest, signatures
not begun are not pushed once stopped, the release's early signing is not repeated, and a
release with a key it cannot use stops before it builds anything. That cosign itself verifies
these signatures is tested against the real registry (tests/integration/test_attest.py)."""
from __future__ import annotations

import base64
import io
import json
import os
import threading

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.secret import SecretBox

from builder.attest import signatures, signing
from builder.commands import sign
from builder.model.errors import AttestationError, InputError
from builder.model.reference import ImageRef, sha256_digest
from builder.registry.client import RegistryError
from tests.helpers.cli import invoke

NAME = "127.0.0.1:5000/hello"
PASSWORD = "s3cret"


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def seal(key: ec.EllipticCurvePrivateKey, password: str, n: int = 1024) -> str:
    """`key` in a cosign private key file's text (scrypt's N lowered: cosign's is 65536)."""
    salt, nonce = os.urandom(32), os.urandom(24)
    secret = signatures.SealedKey(salt, n, 8, 1, nonce, b"").secret(password.encode())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    sealed = SecretBox(secret).encrypt(der, nonce).ciphertext
    body = base64.b64encode(json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode()}).encode()).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", *lines,
                      "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----", ""])


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    """A sealed key in cosign.key, COSIGN_PASSWORD set to its password: (path, the key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "cosign.key"
    path.write_text(seal(key, PASSWORD))
    monkeypatch.setenv(signing.PASSWORD_VARIABLE, PASSWORD)
    return path, key


@pytest.fixture
def key(key_file) -> signing.SigningKey:
    return signing.open_key(str(key_file[0])).result()


class Client:
    """A registry in memory: blobs by digest, manifests by tag; `fail` names a digest whose
    signature's PUT is refused, `gate` holds every look-up until it is set."""

    def __init__(self, signed=(), indexes=None, fail=None, gate=None):
        self.blobs: dict[str, bytes] = {}
        self.manifests = {signatures.tag(d): b"{}" for d in signed}
        self.order: list[str] = []  # what was put, in order: blob digests and tags
        self.indexes = indexes or {}
        self.fail, self.gate = fail, gate
        self.lock = threading.Lock()

    def head_manifest(self, repository, reference):
        if self.gate is not None:
            self.gate.wait(10)
        return object() if reference in self.manifests else None

    def upload_blob(self, repository, data, *, look_first=True):
        with self.lock:
            self.blobs[sha256_digest(data)] = data
            self.order.append(sha256_digest(data))
        return sha256_digest(data)

    def upload_blobs(self, repository, blobs, *, look_first=True):
        return [self.upload_blob(repository, blob, look_first=look_first) for blob in blobs]

    def put_manifest(self, repository, reference, body, media_type):
        if self.fail and reference == signatures.tag(self.fail):
            raise RegistryError(f"registry 127.0.0.1:5000: PUT {reference}: 400 MANIFEST_INVALID")
        with self.lock:
            self.manifests[reference] = body
            self.order.append(reference)
        return sha256_digest(body)

    def get_manifest(self, repository, digest):
        entries = self.indexes[digest]

        class Index:
            is_list = True
            json = {"manifests": [{"digest": d} for d in entries]}
        return Index()


def test_the_sealed_key_is_opened_with_its_password(key_file):
    path, made = key_file
    opened = signing.open_key(str(path)).result()
    assert opened.key.private_numbers() == made.private_numbers()


@pytest.mark.parametrize("text, password, said", [
    (None, "wrong", "COSIGN_PASSWORD does not open it"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", PASSWORD,
     "not a cosign private key"),
    ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n"
     "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", PASSWORD, "its sealed key cannot be read"),
])
def test_a_key_that_cannot_be_opened_is_refused_naming_the_file(key_file, monkeypatch, text,
                                                                 password, said):
    path, _ = key_file
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv(signing.PASSWORD_VARIABLE, password)
    with pytest.raises(InputError) as refused:
        signing.open_key(str(path)).result()
    assert str(refused.value).startswith(f"{path}: --sign-key: ") and said in str(refused.value)
    assert refused.value.exit_code == 2


def test_a_key_asking_scrypt_for_more_memory_than_cosigns_is_refused(key_file):
    """A key file names its own scrypt parameters: 2**26 × r 8 would take 64 GiB."""
    path, _ = key_file
    lines = path.read_text().splitlines()
    sealed = json.loads(base64.b64decode("".join(lines[1:-1])))
    sealed["kdf"]["params"]["N"] = 1 << 26
    path.write_text("\n".join([lines[0], base64.b64encode(json.dumps(sealed).encode()).decode(),
                               lines[-1], ""]))
    with pytest.raises(InputError, match="its scrypt parameters cannot be used"):
        signing.open_key(str(path)).result()


def test_without_cosign_password_the_key_is_refused_saying_what_to_set(key_file, monkeypatch):
    monkeypatch.delenv(signing.PASSWORD_VARIABLE)
    with pytest.raises(InputError, match="set COSIGN_PASSWORD to the password of"):
        signing.open_key(str(key_file[0]))


def test_a_signature_is_the_image_cosign_pushes_and_the_public_key_verifies_it(key_file, key):
    client = Client()
    digest = _digest(7)
    assert signing.sign(client, key, NAME, digest)
    tag = "sha256-" + "0" * 63 + "7.sig"
    manifest = json.loads(client.manifests[tag])
    assert client.order[-1] == tag  # the manifest last: a signature tag is only ever whole
    layer, = manifest["layers"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = client.blobs[layer["digest"]]
    assert json.loads(payload)["critical"] == {
        "identity": {"docker-reference": NAME}, "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature"}
    config = json.loads(client.blobs[manifest["config"]["digest"]])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    key_file[1].public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))


def test_thirty_digests_are_signed_skipping_the_one_signed_before(key):
    client = Client(signed=[_digest(30)])
    references = [(NAME, _digest(n)) for n in range(31)]
    with signing.start(client, key, references) as running:
        done = running.wait()
    assert sorted(done) == [f"{NAME}@{_digest(n)}" for n in range(30)]
    assert client.manifests[signatures.tag(_digest(30))] == b"{}"  # left as it was
    assert len(client.manifests) == 31


def test_a_signature_the_registry_refuses_is_named(key):
    with pytest.raises(AttestationError, match=r"could not sign 1 of 2 digests \(.*@sha256:0+1, "
                                               r"…\): .*MANIFEST_INVALID"):
        with signing.start(Client(fail=_digest(1)), key,
                           [(NAME, _digest(0)), (NAME, _digest(1))]) as s:
            s.wait()


def test_once_stopped_no_signature_not_begun_is_pushed(key):
    gate = threading.Event()
    client = Client(gate=gate)
    references = [(NAME, _digest(n)) for n in range(3 * signing.SIGNERS)]
    running = signing.start(client, key, references)
    running.stop()  # a later stage failed while the first ones wait for the registry
    gate.set()
    running._pool.shutdown(wait=True)
    assert len(client.manifests) <= signing.SIGNERS  # those begun end whole, no other begins


def test_what_early_signing_has_is_not_signed_again_and_both_are_counted(key):
    images = [_digest(n) for n in range(4)]
    client = Client(indexes={_digest(100): images})
    early = signing.start(client, key, [(NAME, d) for d in images])
    out = io.StringIO()
    result = sign.sign_published(client, {f"{NAME}:1.0.0": _digest(100)}, key, out,
                                   early=early)
    assert sorted(result.signed) == sorted(f"{NAME}@{d}" for d in [*images, _digest(100)])
    assert len(client.manifests) == 5 and len(client.order) == 15  # each once: 2 blobs, 1 tag
    assert "signed 5 of 5 digests" in out.getvalue()


class Result:
    def __init__(self, image, digest, attestation=None):
        self.image, self.digest, self.attestation = image, digest, attestation


def test_a_jobs_image_and_attestation_in_the_tags_repository_are_signed_as_it_ends(key_file):
    tags = ImageRef.parse(f"{NAME}:latest")
    pushed = Result(f"{NAME}:1.0.0-amd64", _digest(1), {"digest": _digest(2)})
    assert sign.built_references(pushed, tags) == [(NAME, _digest(1)), (NAME, _digest(2))]
    assert sign.built_references(Result("127.0.0.1:5000/amd64/hello:1.0.0", _digest(3)),
                                   tags) == []  # --arch-namespace: publish copies it in
    assert sign.built_references(Result(f"{NAME}:1.0.0-i386", None), tags) == []  # failed
    client = Client()
    with sign.BuildSigning(client, signing.open_key(str(key_file[0])), tags) as early:
        early.finished(pushed)  # before the engines are probed: the key may not be open yet
        early.ready()
        early.finished(pushed)
        assert sorted(early.signing.wait()) == [f"{NAME}@{_digest(1)}", f"{NAME}@{_digest(2)}"]


def test_a_password_that_does_not_open_the_key_stops_the_build_once_probed(key_file,
                                                                          monkeypatch):
    monkeypatch.setenv(signing.PASSWORD_VARIABLE, "wrong")
    opening = signing.open_key(str(key_file[0]))  # the file and the variable pass at once
    early = sign.BuildSigning(Client(), opening, ImageRef.parse(f"{NAME}:latest"))
    with pytest.raises(InputError, match="COSIGN_PASSWORD does not open it"):
        early.ready()


@pytest.mark.parametrize("text, said", [(None, "no such file"), ("not a key\n",
                                                                 "not a cosign private key")])
def test_a_release_with_a_key_it_cannot_use_stops_before_building(tiny_family_path, tmp_path,
                                                                  text, said):
    path = tmp_path / "cosign.key"
    if text is not None:
        path.write_text(text)
    done = invoke("release", "--version", "1.0.0", "--registry", "127.0.0.1:5999",
                  "--versions", str(tiny_family_path), "--attest", "--sign-key", str(path),
                  "--report", str(tmp_path / "report.json"),
                  env={signing.PASSWORD_VARIABLE: PASSWORD})
    assert done.returncode == 2
    assert said in done.stderr and str(path) in done.stderr
    assert "build and push" not in done.stdout
