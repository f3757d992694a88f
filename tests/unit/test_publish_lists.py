"""The publish stage's choice of list kind (builder.publish.lists): a Docker manifest list when
every member is a Docker v2 manifest, an OCI index when one is not or when --oci asks."""
from __future__ import annotations

import json

from builder.model.reference import (DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Manifest,
                                     sha256_digest)
from builder.publish.lists import Member, assemble, list_media_type


def member(architecture: str, media_type: str) -> Member:
    body = json.dumps({"mediaType": media_type, "x": architecture}).encode()
    return Member(Manifest(media_type, sha256_digest(body), body),
                  {"os": "linux", "architecture": architecture})


def test_docker_members_make_a_manifest_list_unless_oci_is_asked_for():
    assert list_media_type([DOCKER_MANIFEST, DOCKER_MANIFEST]) == DOCKER_LIST
    assert list_media_type([DOCKER_MANIFEST], oci=True) == OCI_INDEX


def test_one_oci_member_makes_an_oci_index():
    assert list_media_type([DOCKER_MANIFEST, OCI_MANIFEST]) == OCI_INDEX
    assert list_media_type([OCI_MANIFEST], oci=False) == OCI_INDEX


def test_assemble_writes_the_kind_it_chose_and_keeps_each_members_type():
    members = [member("arm64", OCI_MANIFEST), member("amd64", DOCKER_MANIFEST)]

    body, media_type = assemble(members)

    document = json.loads(body)
    assert media_type == document["mediaType"] == OCI_INDEX
    assert [(m["platform"]["architecture"], m["mediaType"]) for m in document["manifests"]] == \
        [("amd64", DOCKER_MANIFEST), ("arm64", OCI_MANIFEST)]
    assert assemble(list(reversed(members))) == (body, media_type)
