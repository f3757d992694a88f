"""The summary page's pure renderer: the seed page's round trip byte for byte, and its
formatting rules (sizes, dates, history lines, JSON, platforms, the page's path)."""
from __future__ import annotations

import json
import os

import pytest

from builder.model.reference import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, ImageRef
from builder.summary.page import (BlobHead, Document, ImageDocuments, TagDocuments, created_text,
                                  history_text, json_text, last_modified_text, page_path,
                                  platform_text, render, size_text)
from tests.helpers.seed_documents import seed_documents
from tests.helpers.paths import SEED_PAGE
from tests.helpers.windows_images import CONFIG_TYPE, LAYER_TYPE, POWERSHELL


def test_seed_round_trip_is_byte_identical():
    if not SEED_PAGE.is_file():
        pytest.fail(f"seed page not found at {SEED_PAGE}: set SEED_PAGE to its path", pytrace=False)
    seed = SEED_PAGE.read_text(encoding="utf-8")
    page = render(seed_documents(seed))
    assert page.count("\n") == 903
    assert len(page.encode()) == 63789
    assert page == seed


@pytest.mark.parametrize("size, text", [
    (0, "0.0 B"), (233, "233.0 B"), (1000, "1000.0 B"), (1001, "1.0 KB (1001 bytes)"),
    (1000000, "1000.0 KB (1000000 bytes)"), (1000999, "1001.0 KB (1000999 bytes)"),
    (1001000, "1.0 MB (1001000 bytes)"), (1050000, "1.1 MB (1050000 bytes)"),
    (349284332, "349.3 MB (349284332 bytes)"), (5788551388, "5.8 GB (5788551388 bytes)"),
    (3 * 1000 ** 5, "3000.0 TB (3000000000000000 bytes)"),
])
def test_sizes_are_decimal_and_change_unit_only_past_1000(size, text):
    assert size_text(size) == text


@pytest.mark.parametrize("created, text", [
    ("2019-10-16T23:25:59.999999999Z", "Wed, 16 Oct 2019 23:25:59 GMT"),  # truncated, not rounded
    ("2019-10-17T01:25:59+02:00", "Wed, 16 Oct 2019 23:25:59 GMT"),
    ("2019-10-16T20:25:59.5-03:00", "Wed, 16 Oct 2019 23:25:59 GMT"),
    ("0001-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 GMT"),  # Go's zero time
    ("2019-10-16T23:25:59", "Wed, 16 Oct 2019 23:25:59 GMT"),  # no zone: UTC, not the epoch
    ("2019-10-16 23:25:59.75", "Wed, 16 Oct 2019 23:25:59 GMT"),
    ("yesterday", "Thu, 01 Jan 1970 00:00:00 GMT"),
    (None, "Thu, 01 Jan 1970 00:00:00 GMT"),
])
def test_created_dates(created, text):
    assert created_text(created) == text


@pytest.mark.parametrize("header", ["Wed, 16 Oct 2019 23:31:37 GMT",
                                    "Wednesday, 16-Oct-19 23:31:37 GMT",
                                    "Wed Oct 16 23:31:37 2019"])
def test_last_modified_is_normalized_to_rfc1123(header):
    assert last_modified_text(header) == "Wed, 16 Oct 2019 23:31:37 GMT"


@pytest.mark.parametrize("created_by, shell, text", [
    ("/bin/sh -c #(nop) ADD file:9e9d in / ", None, "ADD file:9e9d in / "),
    ("/bin/sh -c #(nop)  CMD [\"bash\"]", None, "CMD [\"bash\"]"),
    ("/bin/sh -c set -ex; \tapt-get update", None, "RUN set -ex; \tapt-get update"),
    ("|2 A=1 B=x y /bin/sh -c make install", None, "# ARGS: A=1 B=x y\nRUN make install"),
    ("|1 A=1 make install", None, "# unable to parse image command string further:\n|1 A=1 make install"),
    ("Apply image 1607-RTM-amd64", POWERSHELL, "RUN Apply image 1607-RTM-amd64"),
    (" ".join(POWERSHELL) + " #(nop)  SHELL [powershell -Command x]", POWERSHELL,
     "SHELL [powershell -Command x]"),
    (" ".join(POWERSHELL) + " $url = 'x'; \tWrite-Host $url", POWERSHELL, "RUN $url = 'x'; \tWrite-Host $url"),
    ("|1 V=3 " + " ".join(POWERSHELL) + " Write-Host $env:V", POWERSHELL, "# ARGS: V=3\nRUN Write-Host $env:V"),
    ("cmd /S /C #(nop)  ENV A=1", POWERSHELL, "RUN cmd /S /C #(nop)  ENV A=1"),  # not the image's shell
    ("RUN |1 v=11 /bin/sh -c true # buildkit", None, "RUN RUN |1 v=11 /bin/sh -c true # buildkit"),
    (None, None, "RUN "),
])
def test_history_lines(created_by, shell, text):
    assert history_text(created_by, shell) == text


def test_json_is_compact_with_escaped_slashes():
    assert json_text(["/usr/local/bin/x", "a\"b\\c", "\x1b\t", "é"]) == \
        '["\\/usr\\/local\\/bin\\/x","a\\"b\\\\c","\\u001B\\t","é"]'
    assert json_text(["\\u00ab"]) == '["\\\\u00ab"]'  # an escaped backslash, not an escape
    assert json_text([]) == "[]"


@pytest.mark.parametrize("platform, text", [
    ({}, "linux; amd64"),
    ({"architecture": "arm", "os": "linux", "variant": "v5"}, "linux; arm variant v5"),
    ({"architecture": "386", "os": "linux", "variant": None}, "linux; 386"),
    ({"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.805",
      "os.features": ["win32k"]}, "windows version 10.0.17763.805 ft. win32k; amd64"),
    ({"architecture": "arm64", "os": "linux", "variant": "", "features": ["sse4", "aes"]},
     "linux; arm64 variant  ft. sse4, aes"),
    ({"architecture": "unknown", "os": "unknown"}, "unknown; unknown"),
])
def test_platform_strings(platform, text):
    assert platform_text(platform) == text


def _image_documents(platform=None, media_type=DOCKER_MANIFEST, last_modified=None):
    config = {"architecture": "arm64", "os": "linux", "variant": "v8", "docker_version": "20.10.24",
              "config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": [], "Shell": None},
              "history": [{"created": "2019-10-16T23:25:59.5Z",
                           "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
                          {"created": "2019-10-16T23:26:00Z",
                           "created_by": "/bin/sh -c #(nop)  CMD []", "empty_layer": True}]}
    manifest = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": CONFIG_TYPE, "size": 2, "digest": "sha256:" + "c" * 64},
                "layers": [{"mediaType": LAYER_TYPE, "size": 1001, "digest": "sha256:" + "1" * 64},
                           {"mediaType": LAYER_TYPE, "digest": "sha256:" + "2" * 64}]}
    heads = {"sha256:" + "1" * 64: BlobHead(size=1001, last_modified=last_modified),
             "sha256:" + "2" * 64: BlobHead(size=999, media_type=LAYER_TYPE)}
    return ImageDocuments(Document(media_type, "sha256:" + "e" * 64, manifest), config, heads, platform)


def test_single_manifest_page_has_no_per_image_pull_line_and_no_variant():
    page = render(TagDocuments("127.0.0.1:5000/tiny:1.0", "127.0.0.1:5000/tiny",
                               Document(DOCKER_MANIFEST, "sha256:" + "e" * 64, {}),
                               (_image_documents(),)))
    assert page == (
        "## `127.0.0.1:5000/tiny:1.0`\n\n"
        "```console\n$ docker pull 127.0.0.1:5000/tiny@sha256:" + "e" * 64 + "\n```\n\n"
        "-\tPlatforms:\n\t-\tlinux; arm64\n\n"
        "### `127.0.0.1:5000/tiny:1.0` - linux; arm64\n\n"
        "-\tDocker Version: 20.10.24\n"
        "-\tManifest MIME: `application/vnd.docker.distribution.manifest.v2+json`\n"
        "-\tTotal Size: **2.0 KB (2000 bytes)**  \n\t(compressed transfer size, not on-disk size)\n"
        "-\tImage ID: `sha256:" + "c" * 64 + "`\n"
        "-\tEntrypoint: `[\"\\/docker-entrypoint.sh\"]`\n"
        "-\tDefault Command: `[]`\n\n"
        "```dockerfile\n"
        "# Wed, 16 Oct 2019 23:25:59 GMT\nADD file:abc in / \n"
        "# Wed, 16 Oct 2019 23:26:00 GMT\nCMD []\n"
        "```\n\n"
        "-\tLayers:\n"
        "\t-\t`sha256:" + "1" * 64 + "`  \n\t\tSize: 1.0 KB (1001 bytes)  \n\t\tMIME: " + LAYER_TYPE + "\n"
        "\t-\t`sha256:" + "2" * 64 + "`  \n\t\tSize: 999.0 B  \n\t\tMIME: " + LAYER_TYPE + "\n")


def test_oci_index_page_shows_its_media_type_and_last_modified_only_when_sent():
    image = _image_documents({"architecture": "arm64", "os": "linux", "variant": "v8"},
                             media_type="application/vnd.oci.image.manifest.v1+json",
                             last_modified="Wed, 16 Oct 2019 23:31:37 GMT")
    page = render(TagDocuments("x/y:1", "x/y", Document(OCI_INDEX, "sha256:" + "f" * 64, {}), (image,)))
    lines = page.splitlines()
    assert lines[6:9] == ["-\tManifest MIME: `application/vnd.oci.image.index.v1+json`",
                          "-\tPlatforms:", "\t-\tlinux; arm64 variant v8"]
    assert "$ docker pull x/y@sha256:" + "e" * 64 in lines
    assert "-\tManifest MIME: `application/vnd.oci.image.manifest.v1+json`" in lines
    assert page.count("Last Modified:") == 1
    assert "\t\tLast Modified: Wed, 16 Oct 2019 23:31:37 GMT  " in lines
    assert page.endswith("MIME: " + LAYER_TYPE + "\n")


def test_a_layer_without_size_or_media_type_takes_them_from_its_head():
    image = _image_documents()
    layer = {"digest": "sha256:" + "3" * 64}  # neither size nor mediaType in the manifest
    manifest = {**image.manifest.json, "layers": [layer]}
    heads = {layer["digest"]: BlobHead(size=4321, media_type="application/octet-stream")}
    page = render(TagDocuments("x/y:1", "x/y", Document(DOCKER_MANIFEST, "sha256:" + "e" * 64, {}),
                               (ImageDocuments(Document(DOCKER_MANIFEST, image.manifest.digest,
                                                        manifest), image.config, heads),)))
    assert page.endswith(f"\t-\t`{layer['digest']}`  \n\t\tSize: 4.3 KB (4321 bytes)  \n"
                         "\t\tMIME: application/octet-stream\n")
    assert "-\tTotal Size: **4.3 KB (4321 bytes)**  \n" in page


def test_missing_tag_page():
    assert render(TagDocuments("python:nope", "python", None)) == \
        "## `python:nope`\n\n**does not exist** (yet?)\n"


def test_page_path_follows_repo_info_layout(tmp_path):
    assert page_path(ImageRef.parse("python:3.8"), tmp_path) == tmp_path / "python/remote/3.8.md"
    assert page_path(ImageRef.parse("127.0.0.1:5000/team/py:3.8-slim"), tmp_path) == \
        tmp_path / "team/py/remote/3.8-slim.md"


def _attested_tag(image_platform: dict, predicates: list[str]) -> TagDocuments:
    """An OCI index of one image and its attestation manifest holding `predicates`."""
    image = _image_documents(platform=image_platform)
    attestation = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                              "size": 2, "digest": "sha256:" + "9" * 64},
                   "layers": [{"mediaType": "application/vnd.in-toto+json", "size": 10,
                               "digest": "sha256:" + str(n) * 64,
                               "annotations": {"in-toto.io/predicate-type": kind}}
                              for n, kind in enumerate(predicates, start=5)]}
    unknown = {"architecture": "unknown", "os": "unknown"}
    entries = [{"mediaType": DOCKER_MANIFEST, "digest": image.manifest.digest, "size": 1,
                "platform": image_platform},
               {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 1,
                "platform": unknown,
                "annotations": {"vnd.docker.reference.digest": image.manifest.digest,
                                "vnd.docker.reference.type": "attestation-manifest"}}]
    top = Document(OCI_INDEX, "sha256:" + "f" * 64,
                   {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return TagDocuments("x/y:1", "x/y", top, (
        image, ImageDocuments(Document(OCI_MANIFEST, "sha256:" + "a" * 64, attestation),
                              {"architecture": "unknown", "os": "unknown"}, {}, unknown)))


def test_a_windows_images_attestation_section_says_why_it_holds_no_sbom():
    """A Windows image's attestation holds the provenance alone (what the build stage makes for
    a Windows job: no Windows engine runs here, so the documents are made by hand)."""
    windows = {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.805"}
    page = render(_attested_tag(windows, ["https://slsa.dev/provenance/v1"]))
    image, attestation = page.split("\n### ")[1:]
    assert "SBOM" not in image
    assert ("-\tNo SBOM: upstream attests no Windows image, and a Windows engine runs no sh to "
            "read an inventory; this attestation manifest holds the provenance alone\n"
            ) in attestation
    linux = {"architecture": "amd64", "os": "linux"}
    assert "SBOM" not in render(_attested_tag(linux, ["https://spdx.dev/Document",
                                                      "https://slsa.dev/provenance/v1"]))
    assert "-\tNo SBOM in this attestation manifest\n" in render(
        _attested_tag(linux, ["https://slsa.dev/provenance/v1"]))
