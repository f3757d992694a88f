"""What an image holds, read once from the image itself after its smoke tests (pure).

`SCRIPT` runs in a container of the image (``/bin/sh -c``, network off): it prints the dpkg
status file, the apk installed database and, when the image has a Python, every distribution
`importlib.metadata` finds and CPython's own SBOM if the image keeps one, each after a marker
line. `parse` turns that output into an `Inventory`. A busybox image yields an empty one: it
has neither package manager nor Python, and its SBOM says so by listing nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from builder.model.errors import AttestationError as InventoryError

MARK = "::pib-inventory::"

_PYTHON = ("import importlib.metadata as m, json, sys; "
           "print(json.dumps({'version': '.'.join(map(str, sys.version_info[:3])), "
           "'distributions': sorted({(d.metadata['Name'] or '', d.version) "
           "for d in m.distributions() if d.metadata['Name']})}))")

# Where an image keeps CPython's Misc/sbom.spdx.json, when its Dockerfile copies it out of the
# source tree before deleting that.
CPYTHON_SBOM_PATHS = ("/usr/local/share/cpython/sbom.spdx.json",)

SCRIPT = "; ".join([
    f"echo '{MARK}os-release'", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release",
    f"echo '{MARK}dpkg'", "cat /var/lib/dpkg/status 2>/dev/null",
    f"echo '{MARK}apk'", "cat /lib/apk/db/installed 2>/dev/null",
    f"echo '{MARK}python'",
    "for p in python3 python; do command -v $p >/dev/null 2>&1 && "
    f"{{ $p -c \"{_PYTHON}\"; break; }}; done",
    f"echo '{MARK}cpython-sbom'",
    *(f"cat {path} 2>/dev/null" for path in CPYTHON_SBOM_PATHS),
    f"echo '{MARK}end'",
])


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


def parse(output: str) -> Inventory:
    sections = _sections(output)
    dpkg = dpkg_packages(sections.get("dpkg", ""))
    apk = apk_packages(sections.get("apk", ""))
    python, distributions = _python(sections.get("python", ""))
    sbom_text = sections.get("cpython-sbom", "").strip()
    try:
        cpython_sbom = json.loads(sbom_text) if sbom_text else None
    except ValueError:
        raise InventoryError("CPython's sbom.spdx.json in the image is not JSON") from None
    return Inventory("dpkg" if dpkg else "apk" if apk else "", tuple(dpkg or apk), python,
                     distributions, cpython_sbom, _os_release(sections.get("os-release", "")))


def _os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def _sections(output: str) -> dict[str, str]:
    if f"{MARK}end" not in output:
        raise InventoryError("the inventory script did not finish: "
                             + " | ".join(output.strip().splitlines()[-3:]))
    found, name, lines = {}, None, []
    for line in output.splitlines():
        if line.startswith(MARK):
            if name:
                found[name] = "\n".join(lines)
            name, lines = line[len(MARK):], []
        elif name:
            lines.append(line)
    return found


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
