"""A tiny family of hand-made images (tests/helpers/windows_images.py) for the publish tests:
a Debian variant of four platforms and two Windows variants, every image carrying the build
hash `PLANNED` that the plan these tests hand `publish` builds for every member."""
from __future__ import annotations

from pathlib import Path

from builder.model.naming import arch_reference
from builder.model.platforms import PLATFORMS
from builder.model.reference import Manifest
from builder.model.versions import Family, Variant, Version
from builder.registry.client import RegistryClient
from tests.helpers.windows_images import push_image

BUSTER = Variant("buster", "buster", "debian", "debian:buster",
                 (PLATFORMS["amd64"], PLATFORMS["arm32v7"], PLATFORMS["arm64v8"], PLATFORMS["i386"]))
WIN1809 = Variant("windowsservercore-1809", "windows/windowsservercore-1809", "windowsservercore",
                  "mcr.microsoft.com/windows/servercore:1809",
                  (PLATFORMS["windows-amd64"].with_os_version("10.0.17763"),), os_version="10.0.17763")
WIN2016 = Variant("windowsservercore-ltsc2016", "windows/windowsservercore-ltsc2016",
                  "windowsservercore", "mcr.microsoft.com/windows/servercore:ltsc2016",
                  (PLATFORMS["windows-amd64"].with_os_version("10.0.14393"),), os_version="10.0.14393")


PLANNED = "sha256:" + "c" * 64


def planned(key: str, parent: str | None) -> str:
    """The plan's build hash of every member of these tests: the one the images carry."""
    return PLANNED


def make_version(full: str, *variants: Variant) -> Version:
    return Version(full=full, aliases=("1",), variants=variants or (BUSTER, WIN1809, WIN2016))


def make_family(version: Version) -> Family:
    return Family(repository="tinypy", versions=(version,), source=Path("versions.yaml"),
                  templates=Path("templates"), default_debian_suite="buster")


def push_release(client: RegistryClient, host: str, version: Version, *,
                 skip: tuple[tuple[str, str], ...] = (), arch_namespace_layout: bool = False,
                 label: str = "", versioned: bool = False,
                 oci: tuple[tuple[str, str], ...] = ()) -> dict[tuple[str, str], Manifest]:
    """Every per-arch image of `version`, as the build stage would push them (`versioned`:
    with its version label too); those in `oci` as OCI manifests, as the containerd store
    pushes them."""
    pushed = {}
    for variant in version.variants:
        for platform in variant.platforms:
            if (variant.name, platform.name) in skip:
                continue
            ref = arch_reference(host, "tinypy", version, variant, platform,
                                 arch_namespace_layout=arch_namespace_layout)
            pushed[(variant.name, platform.name)] = push_image(
                client, ref.repository, ref.tag, platform, label=label + version.full,
                build_hash=PLANNED, version=version.full if versioned else "",
                oci=(variant.name, platform.name) in oci)
    return pushed
