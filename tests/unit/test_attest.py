"""The attestation cores: the inventory read in an image, its SPDX SBOM, its SLSA provenance,
and the attestation manifest and index entries as BuildKit stores them."""
from __future__ import annotations

import json

import pytest

from builder.attest import inventory, provenance, sbom, signing, statements
from builder.attest.inventory import Distribution, InventoryError, Package
from builder.model.reference import DOCKER_LIST, OCI_INDEX

STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc (2.41-12)
Version: 2.41-12
Description: GNU C Library
 continued description: not a field

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-4
"""

APK = "C:Q1abc=\nP:musl\nV:1.2.5-r9\nA:x86_64\no:musl\n\nP:busybox\nV:1.37.0-r12\nA:x86_64\n"


def test_dpkg_status_gives_the_installed_packages_only_with_their_source():
    found = inventory.assemble({"dpkg": STATUS}, "")
    assert found.manager == "dpkg"
    assert found.packages == (Package("libc6", "2.41-12", "amd64", "glibc", "2.41-12"),
                              Package("tzdata", "2025b-4", "all", "tzdata", "2025b-4"))
    assert found.python is None and found.distributions == ()


def test_apk_database_and_python_distributions():
    python = json.dumps({"version": "3.14.0", "distributions": [["pip", "25.2"]]})
    found = inventory.assemble({"apk": APK}, python)
    assert found.manager == "apk"
    assert [p.name for p in found.packages] == ["busybox", "musl"]
    assert found.python == "3.14.0" and found.distributions == (Distribution("pip", "25.2"),)


def test_an_image_with_none_of_the_files_and_no_python_has_an_empty_inventory():
    found = inventory.assemble({}, "")
    assert (found.manager, found.packages, found.python, found.cpython_sbom,
            found.os_release) == ("", (), None, None, {})


def test_a_python_that_prints_no_inventory_is_refused_with_what_it_printed():
    with pytest.raises(InventoryError, match="printed no inventory: .*No module named"):
        inventory.assemble({}, "ModuleNotFoundError: No module named 'importlib.metadata'\n")


def test_python_is_looked_for_as_command_v_does_on_the_image_path_or_the_engine_default():
    assert inventory.python_candidates(["LANG=C.UTF-8", "PATH=/usr/local/bin:bin:/usr/bin/"]) \
        == ("/usr/local/bin/python3", "/usr/bin/python3")
    assert inventory.python_candidates([])[:2] == ("/usr/local/sbin/python3",
                                                   "/usr/local/bin/python3")


@pytest.mark.parametrize("mode, expected", [
    (0o755, True), (0o644, False), (0o100, True),
    ((1 << 31) | 0o755, False),  # a directory
    ((1 << 27) | 0o777, False),  # a symlink (its target's stat is the one that counts)
    ((1 << 23) | 0o4755, True),  # setuid
])
def test_a_program_is_a_regular_file_with_an_execute_bit(mode, expected):
    assert inventory.runnable(mode) is expected


SUBJECT = sbom.Subject("pkg:docker/r/python@3.14.0-slim-trixie-amd64?platform=linux%2Famd64",
                       "sha256:" + "a" * 64, "2026-01-01T00:00:00Z", "python-image-builder-0.1",
                       "debian-trixie")
SOURCE = sbom.Source("3.14.0", "https://www.python.org/ftp/python/3.14.0/Python-3.14.0.tar.xz",
                     "b" * 64)
CPYTHON_SBOM = {"packages": [{"name": "expat", "versionInfo": "2.7.1", "SPDXID": "SPDXRef-X",
                              "downloadLocation": "https://example/expat.tar.gz"}]}


def _document():
    python = json.dumps({"version": "3.14.0", "distributions": [["pip", "25.2"]]})
    found = inventory.assemble({"dpkg": STATUS, "cpython-sbom": json.dumps(CPYTHON_SBOM)},
                               python)
    return sbom.document(SUBJECT, found, SOURCE)


def _purls(document):
    return [r["referenceLocator"] for p in document["packages"]
            for r in p.get("externalRefs", [])]


def test_the_sbom_is_spdx_2_3_and_lists_packages_cpython_its_components_and_pip():
    document = _document()
    assert document["spdxVersion"] == "SPDX-2.3"
    names = [p["name"] for p in document["packages"]]
    assert names == [SUBJECT.name, "libc6", "tzdata", "CPython", "expat", "pip"]
    assert "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-trixie&upstream=glibc" \
        in _purls(document)
    assert "pkg:pypi/pip@25.2" in _purls(document)
    cpython = document["packages"][3]
    assert cpython["checksums"] == [{"algorithm": "SHA256", "checksumValue": "b" * 64}]
    assert cpython["downloadLocation"] == SOURCE.url
    ids = [p["SPDXID"] for p in document["packages"]]
    assert len(set(ids)) == len(ids)
    contained = {r["relatedSpdxElement"] for r in document["relationships"]
                 if r["relationshipType"] == "CONTAINS"}
    assert contained == set(ids[1:])


def test_an_epoch_is_escaped_in_the_purl():
    package = Package("perl-base", "1:5.40.1-6", "amd64", "perl", "1:5.40.1-6")
    purl = sbom.system_package(package, "dpkg", "debian-trixie", "SPDXRef-x")[
        "externalRefs"][0]["referenceLocator"]
    assert purl.startswith("pkg:deb/debian/perl-base@1%3A5.40.1-6?")


FACTS = provenance.BuildFacts(
    "3.14.0", "slim-trixie", "linux/arm64/v8", "c" * 64, "d" * 64,
    (provenance.Dependency("mirror/library/debian@sha256:" + "e" * 64, "e" * 64),
     provenance.Dependency(SOURCE.url, SOURCE.sha256),
     provenance.Dependency("http://127.0.0.1:8600/python/", upstream="https://www.python.org/ftp/python/")),
    1767225600.0, 1767225660.5, "local", "28.5.1", "x86_64", True, "0.1.0", "abc123")


def test_the_provenance_names_the_parameters_dependencies_engine_and_times():
    found = provenance.predicate(FACTS)
    definition = found["buildDefinition"]
    assert definition["externalParameters"]["dockerfile"] == {"sha256": "c" * 64}
    assert definition["internalParameters"] == {
        "engine": {"name": "local", "version": "28.5.1", "architecture": "x86_64"},
        "emulated": True}
    assert definition["resolvedDependencies"][0]["digest"] == {"sha256": "e" * 64}
    assert definition["resolvedDependencies"][2]["annotations"]["upstream"].startswith("https")
    assert found["runDetails"]["metadata"]["finishedOn"] == "2026-01-01T00:01:00Z"
    assert found["runDetails"]["builder"]["version"]["revision"] == "abc123"


def test_the_attestation_manifest_is_stored_as_buildkit_stores_it():
    image = "sha256:" + "a" * 64
    made = statements.attestation_manifest(image, [
        (sbom.SPDX_PREDICATE, statements.statement("n", image, sbom.SPDX_PREDICATE, {})),
        (provenance.SLSA_PREDICATE, statements.statement("n", image, provenance.SLSA_PREDICATE,
                                                         {}))])
    manifest = json.loads(made.body)
    assert [layer["annotations"]["in-toto.io/predicate-type"] for layer in manifest["layers"]] \
        == [sbom.SPDX_PREDICATE, provenance.SLSA_PREDICATE]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.in-toto+json"}
    first = json.loads(made.blobs[1])
    assert first["subject"][0]["digest"] == {"sha256": "a" * 64}
    assert made.descriptor()["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert made.descriptor()["annotations"] == {
        "vnd.docker.reference.digest": image,
        "vnd.docker.reference.type": "attestation-manifest"}
    assert made.body == statements.attestation_manifest(image, [
        (sbom.SPDX_PREDICATE, statements.statement("n", image, sbom.SPDX_PREDICATE, {})),
        (provenance.SLSA_PREDICATE, statements.statement(
            "n", image, provenance.SLSA_PREDICATE, {}))]).body  # the same bytes again


def test_an_index_with_attestations_is_an_oci_index_listing_them_after_the_images():
    image = "sha256:" + "a" * 64
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"digest": image, "size": 1, "mediaType": "x"},
        {"digest": "sha256:" + "f" * 64, "size": 1, "mediaType": "x"}]}).encode()
    made = statements.attestation_manifest(image, [("p", b"{}")])
    out = json.loads(statements.with_attestations(body, {image: made.descriptor()},
                                                  {"org.opencontainers.image.version": "1"}))
    assert out["mediaType"] == OCI_INDEX
    assert [e["digest"] for e in out["manifests"]] == [image, "sha256:" + "f" * 64, made.digest]
    assert out["annotations"] == {"org.opencontainers.image.version": "1"}
    assert statements.attested(out) == {image: made.descriptor()}
    assert statements.with_attestations(body, {}) == body


def test_an_unchanged_image_keeps_the_attestation_its_tag_lists_and_the_same_bytes():
    from builder.model.reference import Descriptor, Manifest
    from builder.publish.annotations import Origin
    from builder.publish.attestations import attach
    from builder.publish.lists import Member, assemble

    image = Manifest("application/vnd.docker.distribution.manifest.v2+json",
                     "sha256:" + "a" * 64, b"{}")
    member = Member(image, {"os": "linux", "architecture": "amd64",
                            "created": "2026-01-01T00:00:00Z"})
    body, media_type = assemble([member])
    made = statements.attestation_manifest(image.digest, [("p", b"{}")])
    first, kind = attach(None, "r", body, media_type, [member], None,
                         {image.digest: made.descriptor()}, {image.digest: Origin("1.0.0")})
    assert kind == OCI_INDEX

    class Registry:  # the tag's index as the first release wrote it
        def get_manifest(self, repository, digest):
            return Manifest(OCI_INDEX, digest, first)

    current = Descriptor(OCI_INDEX, "sha256:" + "c" * 64, len(first))
    again, _ = attach(Registry(), "r", body, media_type, [member], current, {},
                      {image.digest: Origin("1.0.0")})
    assert again == first
    entry = json.loads(first)["manifests"][0]
    assert entry["annotations"] == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z",
                                    "org.opencontainers.image.version": "1.0.0"}


class _Client:
    """What `signing.access` asks of a registry client."""

    def __init__(self, plain: bool, ca_bundle=None, credentials=None):
        self.registry, self.ca_bundle = "registry.example:5000", ca_bundle
        self._plain, self._credentials = plain, credentials

    def plain_http(self):
        return self._plain

    def credentials(self):
        return self._credentials


def test_cosign_reaches_the_registry_as_the_client_does_its_credentials_in_a_private_config():
    import base64
    import os
    import stat

    from builder.attest import signing
    from builder.registry.credentials import Credentials

    with signing.access(_Client(plain=True)) as reach:
        assert reach == signing.Access(("--allow-http-registry", "--allow-insecure-registry"))
    with signing.access(_Client(False, "/ca.pem", Credentials("u", "s3cret"))) as reach:
        # TLS, verified with the client's CA: never the insecure flags.
        assert reach.flags == ("--registry-cacert", "/ca.pem")
        directory = reach.env["DOCKER_CONFIG"]
        config = os.path.join(directory, "config.json")
        assert json.load(open(config)) == {"auths": {"registry.example:5000": {
            "auth": base64.b64encode(b"u:s3cret").decode()}}}
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert not os.path.exists(directory)
    with signing.access(_Client(False)) as reach:
        assert reach == signing.Access()  # the system's CAs, anonymous
