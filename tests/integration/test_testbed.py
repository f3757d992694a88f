"""The test bed itself: registries, the second engine, the mirror's base images, QEMU, and the
classic builder's FROM scratch cache trap that the build stage must guard against."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import docker.errors
import pytest
import requests

from builder.model.builders import Engine
from builder.farm.engineapi import WrongPlatform, check_platform
from builder.model.errors import InputError
from builder.model.platforms import platform
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST
from testbed.baseimages import BUSYBOX_PLATFORMS, BUSYBOX_REPO, SOURCE_LABEL

# What the engine records for an image built with each --platform, and what `uname -m` says inside
# a container of it on this x86_64 host. Observed with qemu-user-static 7.2 and dockerd 20.10:
# - qemu-arm emulates its default CPU whatever the image's variant (the engine sets no QEMU_CPU),
#   so arm v5, v6 and v7 containers all say armv7l;
# - i386 binaries run natively through the kernel's 32-bit compat layer, no QEMU, and the kernel
#   says x86_64; the ELF header of the image's busybox shows it is 32-bit x86 all the same.
# ELF e_machine (and byte order) of /bin/busybox, read with od inside the container:
# 3e x86-64, 28 ARM, b7 AArch64, 03 i386, 15 PPC64 (little endian), 16 S390 (big endian).
EXPECTED = {
    "amd64": ("amd64", None, "x86_64", "3e 00"),
    "arm32v5": ("arm", "v5", "armv7l", "28 00"),
    "arm32v6": ("arm", "v6", "armv7l", "28 00"),
    "arm32v7": ("arm", "v7", "armv7l", "28 00"),
    "arm64v8": ("arm64", "v8", "aarch64", "b7 00"),
    "i386": ("386", None, "x86_64", "03 00"),
    "ppc64le": ("ppc64le", None, "ppc64le", "15 00"),
    "s390x": ("s390x", None, "s390x", "00 16"),
}

LOCAL = Engine("local", "unix:///var/run/docker.sock", ())  # for engineapi's messages

DERIVED_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN uname -m > /uname-at-build
CMD ["sh", "-c", "cat /uname-at-build; uname -m; od -An -tx1 -j18 -N2 /bin/busybox"]
"""


def _build(client, context: Path, platform_oci: str, **kwargs) -> str:
    """Build with the low-level stream (any `error` chunk fails) and return the image ID."""
    image_id = None
    log = []
    for chunk in client.api.build(path=str(context), platform=platform_oci, rm=True, forcerm=True,
                                  decode=True, **kwargs):
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            pytest.fail(f"build for {platform_oci} failed: {chunk['error']}\n{''.join(log)[-2000:]}")
        image_id = chunk.get("aux", {}).get("ID", image_id)
    assert image_id, "".join(log)
    return image_id


def _remove(client, *image_ids: str) -> None:
    for image_id in dict.fromkeys(image_ids):
        try:
            client.images.remove(image_id, force=True)
        except docker.errors.NotFound:
            pass


# --- registries ------------------------------------------------------------------------------

def test_plain_registry_answers(registry):
    response = requests.get(f"{registry.url}/v2/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.url == f"http://{registry.host}"


def test_tls_registry_wants_its_ca_and_the_right_password(tls_registry):
    url = f"{tls_registry.url}/v2/"
    assert tls_registry.url == f"https://{tls_registry.host}"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify="/etc/ssl/certs/ca-certificates.crt", timeout=10)
    anonymous = requests.get(url, verify=tls_registry.ca_bundle, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = requests.get(url, verify=tls_registry.ca_bundle, auth=(tls_registry.username, "wrong"), timeout=10)
    assert wrong.status_code == 401
    right = requests.get(url, verify=tls_registry.ca_bundle, auth=(tls_registry.username, tls_registry.password),
                         timeout=10)
    assert right.status_code == 200
    assert Path(f"/etc/docker/certs.d/{tls_registry.host}/ca.crt").read_bytes() == tls_registry.ca_bundle.read_bytes()


# --- mirror ------------------------------------------------------------------------------------

def test_mirror_busybox_is_a_manifest_list_of_right_platforms(mirror):
    listed = mirror.get(f"/v2/{BUSYBOX_REPO}/manifests/latest", headers={"Accept": DOCKER_LIST})
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == DOCKER_LIST
    entries = {}
    for entry in listed.json()["manifests"]:
        fields = entry["platform"]
        entries[(fields["os"], fields["architecture"], fields.get("variant"))] = entry
    assert set(entries) == {(p.os, p.architecture, p.variant) for p in BUSYBOX_PLATFORMS}

    for p in BUSYBOX_PLATFORMS:
        entry = entries[(p.os, p.architecture, p.variant)]
        per_arch = mirror.get(f"/v2/{BUSYBOX_REPO}/manifests/{p.name}", headers={"Accept": DOCKER_MANIFEST})
        assert per_arch.status_code == 200
        assert entry["digest"] == "sha256:" + hashlib.sha256(per_arch.content).hexdigest()
        assert entry["size"] == len(per_arch.content)
        config = mirror.get(f"/v2/{BUSYBOX_REPO}/blobs/{per_arch.json()['config']['digest']}").json()
        architecture, variant, _, _ = EXPECTED[p.name]
        assert (config["os"], config["architecture"], config.get("variant")) == ("linux", architecture, variant)
        assert p.debian_arch in config["config"]["Labels"][SOURCE_LABEL]


def test_mirror_debian_trixie_runs(mirror, docker_client):
    reference = f"{mirror.host}/library/debian:trixie"
    docker_client.images.pull(reference)
    image = docker_client.images.get(reference)
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", "amd64")
    os_release = docker_client.containers.run(reference, ["cat", "/etc/os-release"], remove=True,
                                              network_mode="none").decode()
    assert "VERSION_CODENAME=trixie" in os_release


# --- QEMU: a derived image per platform, run --------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED))
def test_derived_image_runs_as_its_platform(name, mirror, docker_client, tmp_path):
    p = platform(name)
    architecture, variant, machine, elf_machine = EXPECTED[name]
    (tmp_path / "Dockerfile").write_text(DERIVED_DOCKERFILE)
    # The per-arch tag, never a local bare name: FROM a local tag of another platform makes the
    # engine go to docker.io (docs/classic-builder.md, trap 4).
    image_id = _build(docker_client, tmp_path, p.oci, buildargs={"BASE": f"{mirror.host}/{BUSYBOX_REPO}:{name}"})
    try:
        attrs = docker_client.images.get(image_id).attrs
        assert (attrs["Os"], attrs["Architecture"], attrs.get("Variant") or None) == ("linux", architecture, variant)
        output = docker_client.containers.run(image_id, remove=True, platform=p.oci,
                                              network_mode="none").decode().split("\n")
        assert [line.strip() for line in output[:3]] == [machine, machine, elf_machine]
    finally:
        _remove(docker_client, image_id)


# --- the classic builder's FROM scratch cache trap --------------------------------------------

def test_scratch_cache_ignores_platform_and_the_check_catches_it(docker_client, tmp_path):
    """Why builds must make the first COPY differ per platform, and check the built platform."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY stamp /stamp\n")
    (tmp_path / "stamp").write_text(f"{uuid.uuid4()}\n")  # fresh: no cache from earlier sessions
    amd64_id = _build(docker_client, tmp_path, "linux/amd64")
    arm64_id = _build(docker_client, tmp_path, "linux/arm64")
    try:
        assert arm64_id == amd64_id
        assert docker_client.images.get(arm64_id).attrs["Architecture"] == "amd64"
        with pytest.raises(WrongPlatform, match="for a linux/arm64/v8 build"):
            check_platform(docker_client.api, LOCAL, arm64_id, platform("arm64v8"))
    finally:
        _remove(docker_client, amd64_id, arm64_id)


def test_first_copy_per_platform_avoids_the_trap(docker_client, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY build-platform /etc/build-platform\nCOPY stamp /stamp\n")
    (tmp_path / "stamp").write_text(f"{uuid.uuid4()}\n")
    built = {}
    try:
        for name in ("amd64", "arm64v8"):
            (tmp_path / "build-platform").write_text(platform(name).oci + "\n")
            built[name] = _build(docker_client, tmp_path, platform(name).oci)
        assert built["amd64"] != built["arm64v8"]
        for name, image_id in built.items():
            check_platform(docker_client.api, LOCAL, image_id, platform(name))
    finally:
        _remove(docker_client, *built.values())


def test_engine_accepts_unknown_platform_and_the_table_does_not(docker_client, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY stamp /stamp\n")
    (tmp_path / "stamp").write_text(f"{uuid.uuid4()}\n")
    image_id = _build(docker_client, tmp_path, "linux/foo", nocache=True)
    try:
        assert docker_client.images.get(image_id).attrs["Architecture"] == "foo"
    finally:
        _remove(docker_client, image_id)
    with pytest.raises(InputError, match="unknown platform 'linux/foo'"):
        platform("linux/foo")


# --- second engine -----------------------------------------------------------------------------

def test_second_engine_is_another_engine(second_engine, docker_client):
    first, second = docker_client.info(), second_engine.client.info()
    assert second["ID"] != first["ID"]
    assert second["DockerRootDir"] != first["DockerRootDir"]
    assert second_engine.url.startswith("unix://")


def test_second_engine_pulls_from_mirror_and_pushes_to_both_registries(second_engine, mirror, registry,
                                                                        tls_registry):
    client = second_engine.client
    source = f"{mirror.host}/{BUSYBOX_REPO}:arm64v8"
    image = client.images.pull(source, platform="linux/arm64")
    assert (image.attrs["Architecture"], image.attrs.get("Variant")) == ("arm64", "v8")
    assert client.containers.run(source, ["uname", "-m"], remove=True, platform="linux/arm64",
                                 network_mode="none") == b"aarch64\n"

    credentials = {"username": tls_registry.username, "password": tls_registry.password}
    for target, auth in ((registry, None), (tls_registry, credentials)):
        repository = f"{target.host}/testbed/second-engine"
        image.tag(repository, tag="arm64v8")
        digest = None
        for chunk in client.api.push(repository, tag="arm64v8", stream=True, decode=True, auth_config=auth):
            assert "error" not in chunk, chunk
            digest = chunk.get("aux", {}).get("Digest", digest)
        assert digest, f"no digest from the push to {target.host}"
        stored = target.get("/v2/testbed/second-engine/manifests/arm64v8", headers={"Accept": DOCKER_MANIFEST})
        assert stored.status_code == 200
        assert stored.headers["Docker-Content-Digest"] == digest


def test_tls_registry_refuses_a_push_without_credentials(docker_client, mirror, tls_registry):
    source = f"{mirror.host}/{BUSYBOX_REPO}:amd64"
    image = docker_client.images.pull(source)
    repository = f"{tls_registry.host}/testbed/anonymous"
    image.tag(repository, tag="amd64")
    try:
        errors = [chunk["error"] for chunk in docker_client.api.push(repository, tag="amd64", stream=True,
                                                                      decode=True, auth_config={})
                  if "error" in chunk]
        assert errors and "basic auth credentials" in errors[0]
    finally:
        docker_client.images.remove(f"{repository}:amd64")
