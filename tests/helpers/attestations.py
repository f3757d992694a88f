"""Read a tag's attestations back from the registry, as the real-build tests check them."""
from __future__ import annotations

import json

from builder.attest.provenance import SLSA_PREDICATE
from builder.attest.sbom import SPDX_PREDICATE
from builder.registry.client import RegistryClient


def sboms(client: RegistryClient, repository: str, tag: str) -> dict[str, dict]:
    return statements(client, repository, tag, SPDX_PREDICATE)


def provenances(client: RegistryClient, repository: str, tag: str) -> dict[str, dict]:
    return statements(client, repository, tag, SLSA_PREDICATE)


def statements(client: RegistryClient, repository: str, tag: str,
               predicate: str) -> dict[str, dict]:
    """{image digest: its statement of `predicate`} for every attestation manifest the tag's
    index lists; each statement's subject checked to be that image."""
    index = client.get_manifest(repository, tag).json["manifests"]
    found = {}
    for entry in index:
        annotations = entry.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") != "attestation-manifest":
            continue
        layers = client.get_manifest(repository, entry["digest"]).json["layers"]
        [layer] = [layer for layer in layers
                   if layer["annotations"]["in-toto.io/predicate-type"] == predicate]
        statement = json.loads(client.get_blob(repository, layer["digest"]))
        image = annotations["vnd.docker.reference.digest"]
        assert statement["subject"][0]["digest"]["sha256"] == image.split(":", 1)[1]
        found[image] = statement
    return found


def package_names(statement: dict) -> set[str]:
    return {package["name"] for package in statement["predicate"]["packages"]}
