"""What an image holds, read once from the image itself after its smoke tests (pure).

The edge (`builder.farm.attestations`) creates a container of the image without starting it
and reads, through the engine's archive endpoint, the first file of each of `SOURCES` that the
image has: os-release, the dpkg status file, the apk installed database and CPython's own SBOM
if the image keeps one. It starts that container only when a Python is on the image's PATH
(`python_candidates`, looked up as `command -v` would): then it runs `PYTHON_SCRIPT`, which
prints every distribution `importlib.metadata` finds. `assemble` turns what was read into an
`Inventory`. A busybox image yields an empty one, and runs nothing: it has neither package
manager nor Python, and its SBOM says so by listing nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from builder.model.errors import AttestationError as InventoryError

# Where an image keeps CPython's Misc/sbom.spdx.json, when its Dockerfile copies it out of the
# source tree before deleting that.
CPYTHON_SBOM_PATHS = ("/usr/local/share/cpython/sbom.spdx.json",)

# name → the paths that may hold it, the first found wins (a missing one is no error).
SOURCES: dict[str, tuple[str, ...]] = {
    "os-release": ("/etc/os-release", "/usr/lib/os-release"),
    "dpkg": ("/var/lib/dpkg/status",),
    "apk": ("/lib/apk/db/installed",),
    "cpython-sbom": CPYTHON_SBOM_PATHS,
}

# The name looked for: every CPython 3 install makes a python3, and importlib.metadata (3.8+)
# is what the script asks, so an image whose only Python is a `python` has none that answers.
PYTHONS = ("python3",)
# The PATH the engine gives a container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PYTHON = ("import importlib.metadata as m, json, sys; "
           "print(json.dumps({'version': '.'.join(map(str, sys.version_info[:3])), "
           "'distributions': sorted({(d.metadata['Name'] or '', d.version) "
           "for d in m.distributions() if d.metadata['Name']})}))")

# Run with /bin/sh, network off, in an image that has a Python: the shell finds it on the
# container's PATH, and exits with its status; only stdout is read.
PYTHON_SCRIPT = (f"for p in {' '.join(PYTHONS)}; do command -v $p >/dev/null 2>&1 && "
                 f"{{ $p -c \"{_PYTHON}\"; exit; }}; done")

# Go's os.FileMode, as the archive endpoint's stat reports a path's mode: the type bits (a
# regular file has none of them: directory, symlink, device, named pipe, socket, character
# device, irregular) above the permission bits.
_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
_EXECUTABLE = 0o111


@dataclass(frozen=True, order=True)
class Package:
    """A system package (dpkg or apk) as its database records it."""
    name: str
    version: str
    architecture: str
    source: str  # the source package; the name itself when the database names none
    source_version: str


@dataclass(frozen=True, order=True)
class Distribution:
    """A Python distribution importlib.metadata finds."""
    name: str
    version: str


@dataclass(frozen=True)
class Inventory:
    manager: str  # "dpkg", "apk" or "" (neither)
    packages: tuple[Package, ...]
    python: str | None  # the image's Python version; None: it has none
    distributions: tuple[Distribution, ...]
    cpython_sbom: dict | None  # CPython's Misc/sbom.spdx.json, when the image keeps it
    os_release: dict[str, str]  # /etc/os-release: ID, VERSION_CODENAME, VERSION_ID…


def python_candidates(env: Sequence[str]) -> tuple[str, ...]:
    """The paths where `command -v` finds a Python in a container whose environment is `env`
    (``NAME=value`` items): each name of `PYTHONS` in each directory of its PATH, in order."""
    path = next((item[len("PATH="):] for item in env if item.startswith("PATH=")),
                DEFAULT_PATH)
    directories = [d.rstrip("/") for d in path.split(":") if d.startswith("/")]
    return tuple(f"{directory}/{name}" for name in PYTHONS for directory in directories)


def runnable(mode: int) -> bool:
    """Whether a path of this mode (the archive endpoint's, Go's os.FileMode) is a program:
    a regular file with an execute bit."""
    return not mode & _MODE_TYPE and bool(mode & _EXECUTABLE)


def assemble(files: Mapping[str, str], printed: str) -> Inventory:
    """The inventory from `files` (name of `SOURCES` → the text of its first path the image
    has; a name it has none of is left out) and `printed`, what `PYTHON_SCRIPT` printed ("":
    the image has no Python)."""
    dpkg = dpkg_packages(files.get("dpkg", ""))
    apk = apk_packages(files.get("apk", ""))
    python, distributions = _python(printed)
    sbom_text = files.get("cpython-sbom", "").strip()
    try:
        cpython_sbom = json.loads(sbom_text) if sbom_text else None
    except ValueError:
        raise InventoryError("CPython's sbom.spdx.json in the image is not JSON") from None
    return Inventory("dpkg" if dpkg else "apk" if apk else "", tuple(dpkg or apk), python,
                     distributions, cpython_sbom, _os_release(files.get("os-release", "")))


def _os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def _stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822 style stanzas (dpkg status); continuation lines are dropped: no field used
    here spans lines."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def dpkg_packages(status: str) -> list[Package]:
    """Every package the dpkg status file has installed (what `dpkg-query -W` lists), sorted."""
    packages = []
    for fields in _stanzas(status):
        if not fields.get("Status", "").endswith(" installed") or "Version" not in fields:
            continue
        source, _, source_version = fields.get("Source", fields["Package"]).partition(" (")
        packages.append(Package(fields["Package"], fields["Version"],
                                fields.get("Architecture", ""), source,
                                source_version.rstrip(")") or fields["Version"]))
    return sorted(packages)


def apk_packages(installed: str) -> list[Package]:
    """Every package of apk's installed database (P: name, V: version, A: arch, o: origin)."""
    packages = []
    for block in re.split(r"\n\s*\n", installed):
        fields = dict(line.split(":", 1) for line in block.splitlines()
                      if len(line) > 2 and line[1] == ":")
        if "P" in fields and "V" in fields:
            packages.append(Package(fields["P"], fields["V"], fields.get("A", ""),
                                    fields.get("o", fields["P"]), fields["V"]))
    return sorted(packages)


def _python(text: str) -> tuple[str | None, tuple[Distribution, ...]]:
    text = text.strip()
    if not text:
        return None, ()
    try:
        found = json.loads(text.splitlines()[-1])
        return found["version"], tuple(sorted(Distribution(n, v)
                                              for n, v in found["distributions"]))
    except (ValueError, KeyError, TypeError):
        raise InventoryError(f"the image's Python printed no inventory: {text[-200:]}") from None
