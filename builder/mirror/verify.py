"""The checks a file passes before it enters the mirror: its sha256, its signature, its key.

gpg runs in a throwaway GNUPGHOME each time, so nothing a user's keyring trusts counts, and
only the key with the fingerprint versions.yaml names can make a signature good. A key that
has expired since the signature was made still verifies, as with gpg itself.
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from builder.model.errors import BuilderError, VerificationError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, name: str) -> None:
    """`path` must have the sha256 versions.yaml gives for `name` (its name in the mirror)."""
    found = sha256_file(path)
    if found != expected:
        raise VerificationError(f"{path.name} (for {name}): sha256 {found} is not {expected}, "
                                "the one versions.yaml gives; refused, the mirror is unchanged")


def key_fingerprints(key_file: Path) -> list[str]:
    """The primary-key fingerprints in an armored or binary key file."""
    with tempfile.TemporaryDirectory(prefix="pib-gnupg-") as home:
        output = _gpg(home, "--with-colons", "--show-keys", str(key_file))
    fingerprints, primary = [], False
    for line in output.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            primary = fields[0] == "pub"
        elif fields[0] == "fpr" and primary:
            fingerprints.append(fields[9])
            primary = False
    return fingerprints


def export_key(key_file: Path, fingerprint: str, name: str) -> bytes:
    """The armored key `fingerprint` alone, from `key_file`; refused when the file lacks it."""
    found = key_fingerprints(key_file)
    if fingerprint not in found:
        raise VerificationError(f"{key_file.name} (for {name}): key fingerprint "
                                f"{', '.join(found) or 'none'} is not {fingerprint}, the one "
                                "versions.yaml gives; refused, the mirror is unchanged")
    with tempfile.TemporaryDirectory(prefix="pib-gnupg-") as home:
        _gpg(home, "--import", str(key_file))
        return _gpg(home, "--armor", "--export", fingerprint).encode()


def check_signature(tarball: Path, signature: Path, key: bytes, fingerprint: str, name: str) -> None:
    """`signature` must be a good signature of `tarball` by the key `fingerprint` (expired or not)."""
    with tempfile.TemporaryDirectory(prefix="pib-gnupg-") as home:
        key_file = Path(home) / "key.asc"
        key_file.write_bytes(key)
        _gpg(home, "--import", str(key_file))
        result = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--status-fd", "1", "--verify",
             str(signature), str(tarball)], capture_output=True, text=True)
    signers = [line.split()[-1] for line in result.stdout.splitlines()
               if line.startswith("[GNUPG:] VALIDSIG ")]
    if result.returncode != 0 or fingerprint not in signers:
        said = next((line for line in result.stderr.splitlines() if "signature" in line.lower()),
                    result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output")
        raise VerificationError(f"{signature.name} (for {name}): not a good signature by "
                                f"{fingerprint}: gpg: {said.removeprefix('gpg: ')}; refused, "
                                "the mirror is unchanged")


def _gpg(home: str, *args: str) -> str:
    result = subprocess.run(["gpg", "--homedir", home, "--batch", "--quiet", *args],
                            capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuilderError(f"gpg {' '.join(args)}: {said}")
    return result.stdout


# Debian's uploaders: developers with upload rights, and maintainers (debian-keyring's files).
# Not debian-nonupload.gpg: those keys may not upload, so a .dsc they signed is no upload.
DEBIAN_KEYRINGS = (Path("/usr/share/keyrings/debian-keyring.gpg"),
                   Path("/usr/share/keyrings/debian-maintainers.gpg"))


def check_dsc(dsc: Path, name: str, keyrings: tuple[Path, ...] = DEBIAN_KEYRINGS) -> tuple[str, str]:
    """A .dsc signed by a key of Debian's keyrings (gpgv): (the text the signature covers,
    who signed it). Only that text is to be read: anything around the signed part is not."""
    present = [k for k in keyrings if k.is_file()]
    if not present:
        raise BuilderError(f"{dsc.name} (for {name}): no Debian keyring to check it with "
                           f"({', '.join(map(str, keyrings))}); install the debian-keyring package")
    with tempfile.TemporaryDirectory(prefix="pib-gpgv-") as home:
        signed = Path(home) / "signed.txt"
        result = subprocess.run(
            ["gpgv", "--homedir", home, "--status-fd", "1", "--output", str(signed),
             *(arg for k in present for arg in ("--keyring", str(k))), str(dsc)],
            capture_output=True, text=True)
        text = signed.read_text(errors="replace") if signed.is_file() else ""
    status = result.stdout.splitlines()
    good = [line.split(" ", 3)[3] for line in status if line.startswith("[GNUPG:] GOODSIG ")]
    valid = [line.split()[2] for line in status if line.startswith("[GNUPG:] VALIDSIG ")]
    if result.returncode != 0 or not good or not valid:
        # gpgv's verdict is its last line ("BAD signature from …", "Can't check signature:
        # No public key"); the lines before it say when and with which key it was made.
        said = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise VerificationError(f"{dsc.name} (for {name}): not a good signature by a key of "
                                f"Debian's keyrings: gpgv: {said.removeprefix('gpgv: ')}; refused")
    return text, f"{good[0]} ({valid[0]})"
