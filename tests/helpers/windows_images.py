"""Hand-made per-arch images, PUT straight to a registry: no engine needed.

The Windows ones stand in for a Windows engine, which cannot run here: config os=windows with
the full os.version a Windows build records, and (by default) a foreign base layer that points
at mcr.microsoft.com like the real base layers do. Shared by test_publish and test_release.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile

from builder.plan.identity import HASH_LABEL
from builder.model.platforms import Platform
from builder.model.reference import (DOCKER_MANIFEST, FOREIGN_LAYER_TYPES, OCI_MANIFEST, Manifest,
                                     sha256_digest)
from builder.registry.client import RegistryClient

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# A manifest type's config and layer types: the graphdriver store pushes Docker v2 manifests,
# the containerd image store OCI ones.
BLOB_TYPES = {OCI_MANIFEST: ("application/vnd.oci.image.config.v1+json",
                             "application/vnd.oci.image.layer.v1.tar+gzip"),
              DOCKER_MANIFEST: (CONFIG_TYPE, LAYER_TYPE)}
# The SHELL a Windows Dockerfile of the family sets: its RUN lines are recorded after it.
POWERSHELL = ["powershell", "-Command",
              "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]
# What each platform's image config says: what a real build of that platform records.
WINDOWS_BUILDS = {"10.0.17763": "10.0.17763.805", "10.0.14393": "10.0.14393.3274"}


def layer(text: str) -> bytes:
    """A gzipped tar holding one file, `stamp`, with `text`: the same bytes for the same text."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("stamp")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(client: RegistryClient, repository: str, tag: str, platform: Platform, *,
               label: str = "", foreign_layer: bool = True, build_hash: str = "",
               version: str = "", oci: bool = False) -> Manifest:
    """PUT a one-layer image whose config says `platform` (a Windows one also gets the full
    os.version a Windows build records and, with `foreign_layer`, a foreign base layer on
    mcr.microsoft.com), labelled with `build_hash` as the build stage labels its images, and
    with `version` in the environment as the templates set it (`TINYPY_VERSION=1.6.0` for
    repository tinypy); `oci`: an OCI manifest, as the containerd image store pushes. The same
    arguments give the same manifest digest."""
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    config_type, layer_type = BLOB_TYPES[media_type]
    stamp = layer(f"{platform.oci} {label}")
    config = {"architecture": platform.architecture, "os": platform.os,
              "rootfs": {"type": "layers", "diff_ids": [sha256_digest(gzip.decompress(stamp))]},
              "history": [{"created": "2019-10-15T00:00:00Z", "created_by": f"stamp {label}"}]}
    # Engines record arm/v7 as "v7" and arm64 with "v8": the list must normalize either way.
    if platform.variant and platform.architecture == "arm":
        config["variant"] = platform.variant
    layers = [{"mediaType": layer_type, "size": len(stamp),
               "digest": client.upload_blob(repository, stamp)}]
    if build_hash:
        config["config"] = {"Labels": {HASH_LABEL: build_hash}}
    if version:
        name = repository.rsplit("/", 1)[-1].upper()
        config.setdefault("config", {})["Env"] = [f"{name}_VERSION={version}"]
    if platform.os == "windows":
        config["os.version"] = WINDOWS_BUILDS[platform.os_version]
        if foreign_layer:
            foreign = "sha256:" + sha256_digest(platform.os_version.encode())[7:]
            layers.insert(0, {"mediaType": FOREIGN_LAYER_TYPES[0], "size": 1024, "digest": foreign,
                              "urls": [f"https://mcr.microsoft.com/v2/windows/servercore/blobs/{foreign}"]})
            config["rootfs"]["diff_ids"].insert(0, foreign)
    config_bytes = json.dumps(config).encode()
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": config_type, "size": len(config_bytes),
                                  "digest": client.upload_blob(repository, config_bytes)},
                       "layers": layers}, indent=3).encode()
    digest = client.put_manifest(repository, tag, body, media_type)
    return Manifest(media_type, digest, body)
