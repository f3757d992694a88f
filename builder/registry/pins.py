"""Base images pinned to the digest of their per-platform manifest, through the run's registries.

The edge `builder.plan.identity.prepare` takes its `pins` from. A FROM without a registry host
is a Docker Hub name; it is looked up in the base mirror (``<mirror>/library/busybox``) when the
builders file names one. Each base's tag is read once per run, whatever the number of
platforms pinning it, and each (base, platform) pin is asked once; thread-safe, since the
build stage's jobs pin from their own threads.
"""
from __future__ import annotations

import threading

from builder.model.errors import BuilderError
from builder.model.platforms import Platform
from builder.model.reference import DOCKER_HUB, ImageRef
from builder.registry.client import Registries, RegistryError


class BasePins:
    def __init__(self, registries: Registries, base_mirror: str | None) -> None:
        self.registries = registries
        self.base_mirror = base_mirror
        self._pins: dict[tuple[str, str], str] = {}
        self._digests: dict[str, str] = {}  # a base's tag, read once: every platform pins one list
        self._lock = threading.Lock()
        self._digest_lock = threading.Lock()

    def pin(self, image: str, platform: Platform) -> str:
        """`image` pinned to the digest of its `platform` manifest: `host/repository@sha256:…`."""
        key = (image, platform.name + (platform.os_version or ""))
        with self._lock:
            if key in self._pins:
                return self._pins[key]
        ref = ImageRef.parse(image)
        host = self.host(ref)
        try:
            manifest = self.registries.client(host).resolve_platform(
                ImageRef(host, ref.repository, ref.tag, self._digest(host, ref)), platform)
        except RegistryError as error:
            hint = ("; Docker Hub is out of reach: set base-mirror in the builders file "
                    "or BUILDER_BASE_MIRROR to a registry holding library/… images"
                    if host == DOCKER_HUB else "")
            raise BuilderError(f"cannot pin base image {image} for "
                               f"{platform.oci}: {error}{hint}") from None
        pinned = f"{host}/{ref.repository}@{manifest.digest}"
        with self._lock:
            self._pins[key] = pinned
        return pinned

    def host(self, ref: ImageRef) -> str:
        """The registry a base is pinned from: the base mirror for Docker Hub's, when set."""
        return self.base_mirror if ref.registry == DOCKER_HUB and self.base_mirror \
            else ref.registry

    def _digest(self, host: str, ref: ImageRef) -> str:
        """The digest `ref` has in `host` now, asked once per run (its document is cached)."""
        if ref.digest:
            return ref.digest
        key = f"{host}/{ref.repository}:{ref.tag}"
        with self._digest_lock:  # one lookup per base; the jobs wanting it wait for it
            if key not in self._digests:
                self._digests[key] = self.registries.client(host).get_manifest(
                    ref.repository, ref.tag).digest
            return self._digests[key]
