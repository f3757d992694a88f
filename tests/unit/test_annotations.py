"""The OCI annotations of a tag's index and its image entries, as docker-library/meta-scripts
writes them (its `build_annotations`), and the git edge that says which commit a Dockerfile's
directory is at."""
from __future__ import annotations

import json

from builder.generate.library import committed
from builder.model.reference import OCI_INDEX, Descriptor, Manifest
from builder.publish.annotations import Origin, image_annotations, index_annotations
from builder.publish.attestations import attach
from builder.publish.lists import Member, assemble
from tests.helpers.git import git

COMMIT = "4" * 40
BASE = "sha256:" + "b" * 64
CREATED = "2026-01-01T00:00:00Z"
ORIGIN = Origin("3.14.7", "https://github.com/example/python-images.git", COMMIT,
                "3.14/slim-trixie", "https://hub.docker.com/_/python", "debian:trixie-slim", BASE)


def test_an_image_entry_carries_what_upstream_writes_on_it():
    assert image_annotations(ORIGIN, CREATED) == {
        "org.opencontainers.image.base.digest": BASE,
        "org.opencontainers.image.base.name": "debian:trixie-slim",
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.revision": COMMIT,
        "org.opencontainers.image.source":
            f"https://github.com/example/python-images.git#{COMMIT}:3.14/slim-trixie",
        "org.opencontainers.image.url": "https://hub.docker.com/_/python",
        "org.opencontainers.image.version": "3.14.7"}


def test_what_is_not_known_is_left_out_as_upstream_leaves_it_out():
    # No git-repo: no source, but the commit is still the revision; no commit: neither.
    assert "org.opencontainers.image.source" not in image_annotations(
        Origin("1.0.0", commit=COMMIT), None)
    assert image_annotations(Origin("1.0.0", "https://example.org/r.git"), 1234) == {
        "org.opencontainers.image.version": "1.0.0"}


def test_the_index_carries_what_all_its_images_share_and_the_newest_created():
    linux = image_annotations(ORIGIN, CREATED)
    arm = image_annotations(Origin(**{**ORIGIN.__dict__, "base_digest": "sha256:" + "c" * 64}),
                            "2026-01-02T00:00:00Z")
    assert index_annotations([linux, arm]) == {
        "org.opencontainers.image.created": "2026-01-02T00:00:00Z",
        "org.opencontainers.image.revision": COMMIT,
        "org.opencontainers.image.source": linux["org.opencontainers.image.source"],
        "org.opencontainers.image.url": "https://hub.docker.com/_/python",
        "org.opencontainers.image.version": "3.14.7"}
    # A shared tag over two directories (Linux and Windows variants) has no one source.
    windows = image_annotations(Origin(**{**ORIGIN.__dict__,
                                          "directory": "3.14/windows/windowsservercore-ltsc2022"}),
                                CREATED)
    assert "org.opencontainers.image.source" not in index_annotations([linux, windows])
    assert index_annotations([linux, windows])["org.opencontainers.image.revision"] == COMMIT


def _member(digest: str, architecture: str) -> Member:
    return Member(Manifest("application/vnd.docker.distribution.manifest.v2+json",
                           digest, b"{}"),
                  {"os": "linux", "architecture": architecture, "created": CREATED})


def test_a_lagging_member_keeps_the_annotations_the_tag_gave_it_and_a_rerun_the_same_bytes():
    old, new = _member("sha256:" + "1" * 64, "arm64"), _member("sha256:" + "2" * 64, "amd64")
    before = Origin("3.14.6", base_name="debian:trixie-slim", base_digest=BASE)
    body, media_type = assemble([old])
    first, _ = attach(None, "r", body, media_type, [old], None, {},
                      {old.manifest.digest: before})

    class Registry:  # the tag's index as the release of 3.14.6 wrote it
        def get_manifest(self, repository, digest):
            return Manifest(OCI_INDEX, digest, first)

    current = Descriptor(OCI_INDEX, "sha256:" + "c" * 64, len(first))
    body, media_type = assemble([old, new])
    written, _ = attach(Registry(), "r", body, media_type, [old, new], current, {},
                        {new.manifest.digest: ORIGIN})
    entries = {e["digest"]: e["annotations"] for e in json.loads(written)["manifests"]}
    assert entries[old.manifest.digest] == image_annotations(before, CREATED)
    assert entries[new.manifest.digest] == image_annotations(ORIGIN, CREATED)
    # Two versions in one tag: the index names none.
    assert "org.opencontainers.image.version" not in json.loads(written)["annotations"]
    again, _ = attach(Registry(), "r", body, media_type, [old, new], current, {},
                      {new.manifest.digest: ORIGIN})
    assert again == written


def test_the_commit_of_a_directory_from_the_top_of_the_checkout_and_none_when_changed(tmp_path):
    family = tmp_path / "images"
    (family / "1.0" / "slim").mkdir(parents=True)
    (family / "1.0" / "other").mkdir()
    assert committed(family, "1.0/slim") is None  # not a git checkout
    git(tmp_path, "init", "-q")
    (family / "1.0" / "slim" / "Dockerfile").write_text("FROM debian:trixie-slim\n")
    assert committed(family, "1.0/slim") is None  # untracked: no commit describes it
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "slim")
    first = git(tmp_path, "rev-parse", "HEAD")
    (family / "1.0" / "other" / "Dockerfile").write_text("FROM busybox\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "other")  # another directory's commit moves nothing
    assert committed(family, "1.0/slim") == (first, "images/1.0/slim")
    (family / "1.0" / "slim" / "Dockerfile").write_text("FROM debian:trixie\n")
    assert committed(family, "1.0/slim") is None  # changed since
