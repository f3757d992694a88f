"""An image's SPDX 2.3 SBOM, from what was read in the image itself (pure).

Its packages: every system package (``pkg:deb/debian/…`` or ``pkg:apk/alpine/…``), CPython
(version, the source tarball's URL and sha256) with the components of CPython's own SBOM when
the image keeps it, and every Python distribution (``pkg:pypi/…``). The same inventory and
facts give the same bytes: the document's time is the build's, not the moment it was written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from builder.attest.inventory import Inventory, Package

SPDX_PREDICATE = "https://spdx.dev/Document"
_NOASSERTION = "NOASSERTION"


@dataclass(frozen=True)
class Source:
    """The CPython source tarball the image was built from."""
    version: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class Subject:
    """What the SBOM describes: the image, named as its statements name it."""
    name: str  # pkg:docker/…@sha256:…?platform=linux%2Famd64
    digest: str  # sha256:…
    created: str  # RFC 3339, the build's finish time
    tool: str  # "python-image-builder-0.1.0"
    distro: str  # "debian-trixie", "alpine-3.22": the purls' distro qualifier; "" when unknown


def _spdx_id(kind: str, name: str, seen: set[str]) -> str:
    """An SPDXID (letters, digits, . and -), unique in the document."""
    base = f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]+", "-", name)
    spdx_id, n = base, 1
    while spdx_id in seen:
        n += 1
        spdx_id = f"{base}-{n}"
    seen.add(spdx_id)
    return spdx_id


def _purl(kind: str, namespace: str, name: str, version: str, **qualifiers: str) -> str:
    ns = f"{namespace}/" if namespace else ""
    text = f"pkg:{kind}/{ns}{quote(name, safe='')}@{quote(version, safe='')}"
    pairs = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(qualifiers.items()) if v)
    return f"{text}?{pairs}" if pairs else text


def _package(spdx_id: str, name: str, version: str, purl: str | None, **extra) -> dict:
    package = {"name": name, "SPDXID": spdx_id, "versionInfo": version,
               "downloadLocation": _NOASSERTION, "filesAnalyzed": False,
               "supplier": _NOASSERTION}
    if purl:
        package["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                    "referenceType": "purl", "referenceLocator": purl}]
    return package | extra


def system_package(package: Package, manager: str, distro: str, spdx_id: str) -> dict:
    if manager == "apk":
        purl = _purl("apk", "alpine", package.name, package.version, arch=package.architecture,
                     distro=distro)
    else:
        purl = _purl("deb", "debian", package.name, package.version, arch=package.architecture,
                     distro=distro, upstream=package.source if package.source != package.name
                     else "")
    source = f"built from the {manager} source package {package.source} {package.source_version}"
    return _package(spdx_id, package.name, package.version, purl, sourceInfo=source,
                    comment=f"{manager}: architecture {package.architecture}")


def cpython_packages(source: Source, sbom: dict | None, seen: set[str]) -> list[dict]:
    """CPython, and the components its own SBOM (Misc/sbom.spdx.json) lists."""
    cpython = _package(_spdx_id("cpython", source.version, seen), "CPython", source.version,
                       _purl("generic", "", "python", source.version, download_url=source.url),
                       downloadLocation=source.url)
    if source.sha256:
        cpython["checksums"] = [{"algorithm": "SHA256", "checksumValue": source.sha256}]
    found = [cpython]
    for component in (sbom or {}).get("packages", []):
        if not isinstance(component, dict) or not component.get("name"):
            continue
        kept = {k: component[k] for k in ("versionInfo", "downloadLocation", "checksums",
                                          "externalRefs", "licenseConcluded") if k in component}
        found.append(_package(_spdx_id("cpython-component", component["name"], seen),
                              component["name"], kept.pop("versionInfo", _NOASSERTION), None,
                              comment="bundled with CPython (its Misc/sbom.spdx.json)", **kept))
    return found


def document(subject: Subject, inventory: Inventory, source: Source | None) -> dict:
    """The SPDX 2.3 document: the image DESCRIBED, CONTAINS every package found in it."""
    seen: set[str] = {"SPDXRef-DOCUMENT", "SPDXRef-image"}
    packages = [_package("SPDXRef-image", subject.name, subject.digest, None,
                         primaryPackagePurpose="CONTAINER")]
    packages += [system_package(p, inventory.manager, subject.distro,
                                _spdx_id(inventory.manager, f"{p.name}-{p.architecture}", seen))
                 for p in inventory.packages]
    if source is not None and inventory.python is not None:
        packages += cpython_packages(source, inventory.cpython_sbom, seen)
    packages += [_package(_spdx_id("pypi", d.name, seen), d.name, d.version,
                          _purl("pypi", "", re.sub(r"[-_.]+", "-", d.name).lower(), d.version))
                 for d in inventory.distributions]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-image"}]
    relationships += [{"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS",
                       "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]]
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "documentNamespace": f"https://python-image-builder.invalid/spdx/{subject.digest}",
        "creationInfo": {"created": subject.created, "creators": [f"Tool: {subject.tool}"]},
        "packages": packages, "relationships": relationships,
    }
