"""cosign's signatures, as cosign stores them (pure): what a signature of one digest is made of,
so that `cosign verify` and every reader of cosign's signatures finds this tool's.

A signature is an image of its own in the signed one's repository, tagged ``sha256-<hex>.sig``:
its one layer is the simple-signing payload (the repository and the signed manifest's digest),
the layer's ``dev.cosignproject.cosign/signature`` annotation the payload's ECDSA signature
(DER, base64), its config the one cosign writes (zero times, the layer's digest as diff id).
The facts are cosign's (its SIGNATURE_SPEC and what `cosign sign` pushes); the code is ours.

The private key is the one `cosign generate-key-pair` writes: a PEM block holding JSON, the
DER of a PKCS#8 key sealed with NaCl's secretbox under a key that scrypt derives from the
password, with the scrypt parameters and salt beside it.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from builder.model.reference import OCI_MANIFEST, sha256_digest

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PAYLOAD_TYPE = "cosign container image signature"
# The PEM labels of cosign's encrypted private keys: today's, and the one before it.
KEY_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # what cosign writes: a signature's image has no time
# Bytes scrypt may use: cosign's parameters (N 65536, r 8) need 64 MiB; a key file asking for
# more than this is refused by OpenSSL rather than obeyed.
_MAX_MEMORY = 1 << 30


def tag(digest: str) -> str:
    """The tag of `digest`'s signature image: sha256:ab… → sha256-ab….sig."""
    return digest.replace(":", "-") + ".sig"


def payload(name: str, digest: str) -> bytes:
    """The simple-signing payload that says `name` (host/repository) is the manifest `digest`."""
    return _compact({"critical": {"identity": {"docker-reference": name},
                                  "image": {"docker-manifest-digest": digest},
                                  "type": PAYLOAD_TYPE},
                     "optional": None})


@dataclass(frozen=True)
class SignatureImage:
    """One digest's signature, as pushed: two blobs, then the manifest under `tag`."""
    tag: str
    payload: bytes
    config: bytes
    manifest: bytes

    @property
    def blobs(self) -> tuple[bytes, ...]:
        return self.payload, self.config


def signature_image(name: str, digest: str, signature: bytes) -> SignatureImage:
    """The signature image of `digest` in repository `name`, whose payload `signature` (DER)
    signs."""
    body = payload(name, digest)
    config = _compact({"architecture": "", "created": _ZERO_TIME,
                       "history": [{"created": _ZERO_TIME}], "os": "",
                       "rootfs": {"type": "layers", "diff_ids": [sha256_digest(body)]},
                       "config": {}})
    manifest = _compact({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
        "layers": [{"mediaType": SIMPLE_SIGNING, "size": len(body),
                    "digest": sha256_digest(body),
                    "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}}]})
    return SignatureImage(tag(digest), body, config, manifest)


class KeyUnusable(ValueError):
    """The key file is not a cosign private key this tool can open, or the password is wrong."""


@dataclass(frozen=True)
class SealedKey:
    """An encrypted cosign key, as its file holds it."""
    salt: bytes
    n: int
    r: int
    p: int
    nonce: bytes
    ciphertext: bytes

    def secret(self, password: bytes) -> bytes:
        """The secretbox key scrypt derives from `password` (a sixth of a second of CPU with
        cosign's parameters); ValueError for parameters OpenSSL refuses."""
        return hashlib.scrypt(password, salt=self.salt, n=self.n, r=self.r, p=self.p,
                              maxmem=min(256 * self.n * self.r + (1 << 20), _MAX_MEMORY),
                              dklen=32)


def sealed_key(pem: str) -> SealedKey:
    """The sealed key in a cosign private key file's text; KeyUnusable saying what is wrong."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    label = lines[0].removeprefix("-----BEGIN ").removesuffix("-----") if lines else ""
    if label not in KEY_LABELS or lines[-1] != f"-----END {label}-----":
        raise KeyUnusable("not a cosign private key (no ENCRYPTED SIGSTORE PRIVATE KEY block): "
                          "make one with `cosign generate-key-pair`")
    try:
        sealed = json.loads(base64.b64decode("".join(lines[1:-1])))
        kdf, cipher, params = sealed["kdf"], sealed["cipher"], sealed["kdf"]["params"]
        found = SealedKey(base64.b64decode(kdf["salt"]), int(params["N"]), int(params["r"]),
                          int(params["p"]), base64.b64decode(cipher["nonce"]),
                          base64.b64decode(sealed["ciphertext"]))
    except (ValueError, KeyError, TypeError) as error:
        raise KeyUnusable(f"its sealed key cannot be read ({error})") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise KeyUnusable(f"sealed with {kdf.get('name')} and {cipher.get('name')}; only "
                          "scrypt and nacl/secretbox (cosign's) are known")
    return found


def _compact(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
