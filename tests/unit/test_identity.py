"""What a job is (`builder.plan.identity.prepare`): the Dockerfile as sent, its context, its hash.

Pure: the tiny family's plan, made-up pins and mirrors; no engine, no registry.
"""
from __future__ import annotations

import dataclasses
import io
import tarfile

from builder.model.builders import Builders, Engine
from builder.model.mirrors import Mirror
from builder.model import versions
from builder.model.platforms import PLATFORMS
from builder.plan.identity import bases, build_hash, parent_reference, prepare
from builder.plan.plan import plan
from tests.helpers.families import derived_family

PIN = "m:5000/library/busybox@sha256:" + "b" * 64
PARENT = "r:5000/tiny:1.0.0-busybox-amd64"
DIGEST = "sha256:" + "c" * 64


def members(tmp_path, tiny_family_path) -> dict:
    family = versions.load(derived_family(tmp_path, tiny_family_path))
    builders = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),))
    return {job.key: job for job in plan(family, "1.0.0", builders=builders,
                                         registry="r:5000").members}


def test_a_base_is_pinned_and_the_hash_is_of_the_dockerfile_as_sent(tmp_path, tiny_family_path):
    job = members(tmp_path, tiny_family_path)["1.0.0/busybox/amd64"]
    assert bases(job) == ["busybox:latest"]

    prepared = prepare(job, None, {"busybox:latest": PIN}, ())

    assert f"\nFROM {PIN}\n" in prepared.dockerfile and "busybox:latest" not in prepared.dockerfile
    assert prepared.bases == (PIN,) and prepared.mirrors == ()
    assert prepared.build_hash == build_hash(prepared.dockerfile, job.build_args, "linux/amd64")
    with tarfile.open(fileobj=io.BytesIO(prepared.context)) as tar:
        assert tar.getnames() == ["Dockerfile"]
        assert tar.extractfile("Dockerfile").read().decode() == prepared.dockerfile
    other = prepare(job, None, {"busybox:latest": PIN.replace("b" * 64, "d" * 64)}, ())
    assert other.build_hash != prepared.build_hash  # the base's digest is part of the identity


def test_a_child_builds_from_its_parent_which_is_no_base_to_pin(tmp_path, tiny_family_path):
    child = members(tmp_path, tiny_family_path)["1.0.0/onbuild/amd64"]
    assert child.parent == "1.0.0/busybox/amd64" and bases(child) == []
    parent = parent_reference(PARENT, DIGEST)
    assert parent == f"r:5000/tiny@{DIGEST}"

    pushed = prepare(child, parent, {}, ())
    local = prepare(child, "sha256:" + "e" * 64, {}, ())  # the image id an engine just built

    assert f"\nFROM {parent}\n" in pushed.dockerfile and pushed.bases == ()
    assert local.build_hash != pushed.build_hash


def test_upstream_urls_go_to_their_mirrors_and_change_the_hash(tmp_path, tiny_family_path):
    job = members(tmp_path, tiny_family_path)["1.0.0/busybox/amd64"]
    job = dataclasses.replace(job, dockerfile_text=job.dockerfile_text.replace(
        "CMD", "RUN wget https://www.python.org/ftp/python/1.0.0/x.tgz\nCMD"))
    mirror = Mirror("python-org", "https://www.python.org/ftp/python/", "http://127.0.0.1:8600/python/")
    unused = Mirror("keyserver", "hkps://keys.openpgp.org", "hkp://127.0.0.1:8600")

    direct = prepare(job, None, {"busybox:latest": PIN}, ())
    mirrored = prepare(job, None, {"busybox:latest": PIN}, (mirror, unused))

    assert "wget http://127.0.0.1:8600/python/1.0.0/x.tgz" in mirrored.dockerfile
    assert mirrored.mirrors == (mirror,)
    assert mirrored.build_hash != direct.build_hash
