"""Where each file of the source mirror lives: python.org's ftp/python/ tree, keys beside it.

    python/3.13.5/Python-3.13.5.tar.xz       the tarball, as python.org names it
    python/3.13.5/Python-3.13.5.tar.xz.asc   its signature, where the series is signed
    keys/7169605F62C751356D054A26A821E680E5FA6305.asc   the release manager's key, armored

The server answers HKP lookups from keys/, so the names are the full fingerprints.
"""
from __future__ import annotations

import re

PYTHON = "python"  # served as /python/…: what https://www.python.org/ftp/python/ maps to
KEYS = "keys"
WORK = ".work"  # apt's state, downloads, staging: beside the tree, never served

_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


def tarball_name(version: str) -> str:
    return f"Python-{version}.tar.xz"


def release_directory(version: str) -> str:
    """python.org's directory of a version: the release number without a pre-release suffix."""
    return re.match(r"\d+\.\d+\.\d+", version).group(0)


def tarball_path(version: str) -> str:
    return f"{PYTHON}/{release_directory(version)}/{tarball_name(version)}"


def signature_path(version: str) -> str:
    return tarball_path(version) + ".asc"


def key_path(fingerprint: str) -> str:
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError(f"{fingerprint!r} is not a fingerprint of 40 upper-case hex digits")
    return f"{KEYS}/{fingerprint}.asc"


def debian_source_package(version: str) -> str:
    """Debian's source package of a CPython series: python3.13 for 3.13.5."""
    major, minor = version.split(".")[:2]
    return f"python{major}.{minor}"


def debian_orig_name(version: str) -> str:
    """How Debian names upstream's tarball: python3.13_3.13.5.orig.tar.xz."""
    return f"{debian_source_package(version)}_{version}.orig.tar.xz"


def debian_pool_directory(version: str) -> str:
    """Where Debian's archive keeps a series' source files: pool/main/p/python3.13."""
    package = debian_source_package(version)
    return f"pool/main/{package[0]}/{package}"


def lookup_key(search: str, fingerprints: list[str]) -> str | None:
    """The fingerprint an HKP search names: 0x + the fingerprint, or its last 16 (key ID) or
    8 hex digits, as gpg sends them; None when no key matches or several do."""
    wanted = search.upper().removeprefix("0X")
    if not re.fullmatch(r"[0-9A-F]{8}|[0-9A-F]{16}|[0-9A-F]{40}", wanted):
        return None
    found = [f for f in fingerprints if f.endswith(wanted)]
    return found[0] if len(found) == 1 else None
