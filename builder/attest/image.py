"""One per-arch image's attestation manifest, from its build's facts and its inventory (pure).

Linux images get an SBOM and a provenance statement; a Windows image (no inventory: upstream
offers none, and its engines run no sh) gets the provenance only. Both name the image by the
digest its push gave, and both carry the build's own times, never the moment they were made.
"""
from __future__ import annotations

from dataclasses import dataclass

from builder.attest import provenance, sbom, statements
from builder.attest.inventory import Inventory
from builder.attest.provenance import BuildFacts

# Why a Windows image's attestation holds the provenance alone; the summary page and the report
# say it where an SBOM would be.
WINDOWS_NO_SBOM = ("upstream attests no Windows image, and a Windows engine runs no sh to read "
                   "an inventory")


@dataclass(frozen=True)
class ImageFacts:
    reference: str  # the per-arch reference it was pushed as: 127.0.0.1:5000/python:3.14.0-slim-amd64
    digest: str  # its manifest's digest
    build: BuildFacts
    source: sbom.Source | None  # the CPython tarball; None for an image built from none
    inventory: Inventory | None  # None: not read (Windows)


def without_sbom(os: str) -> str | None:
    """Why an image of `os` (an OCI os: linux, windows) gets no SBOM; None when it gets one."""
    return WINDOWS_NO_SBOM if os == "windows" else None


def distro(inventory: Inventory) -> str:
    """The purls' distro qualifier from the image's os-release: debian-trixie, alpine-3.22."""
    release = inventory.os_release
    name = release.get("ID", "")
    suite = release.get("VERSION_CODENAME") or release.get("VERSION_ID", "")
    return f"{name}-{suite}" if name and suite else name


def attestation(facts: ImageFacts) -> statements.AttestationManifest:
    name = statements.subject_name(facts.reference.split("@")[0], facts.build.platform)
    made = []
    if facts.inventory is not None:
        subject = sbom.Subject(name, facts.digest, provenance.rfc3339(facts.build.finished),
                               f"python-image-builder-{facts.build.tool_version}",
                               distro(facts.inventory))
        made.append((sbom.SPDX_PREDICATE, statements.statement(
            name, facts.digest, sbom.SPDX_PREDICATE,
            sbom.document(subject, facts.inventory, facts.source))))
    made.append((provenance.SLSA_PREDICATE, statements.statement(
        name, facts.digest, provenance.SLSA_PREDICATE, provenance.predicate(facts.build))))
    return statements.attestation_manifest(facts.digest, made)
