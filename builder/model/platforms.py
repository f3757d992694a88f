"""The one table of platforms: official-images names ↔ OCI platforms.

Every stage goes through this table, so that `arm32v7`, `linux/arm/v7` and a
config saying `{"architecture": "arm", "variant": "v7"}` are the same thing
everywhere, and an unknown platform is rejected before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping, NamedTuple

from builder.model.errors import InputError


@dataclass(frozen=True)
class Platform:
    name: str  # official-images architecture name: amd64, arm32v7, windows-amd64
    os: str  # OCI os: linux, windows
    architecture: str  # OCI / GOARCH: amd64, arm, arm64, 386
    variant: str | None = None  # v5, v6, v7, v8
    os_version: str | None = None  # Windows only: 10.0.17763 (a prefix of the image's os.version)
    debian_arch: str | None = None  # dpkg architecture, for base images and binfmt lookups

    @property
    def oci(self) -> str:
        """`linux/arm/v7`, the form `docker build --platform` takes."""
        return oci_text(self.os, self.architecture, self.variant)

    def with_os_version(self, os_version: str | None) -> Platform:
        return replace(self, os_version=os_version)

    def sort_key(self) -> tuple:
        """Manifest-list order: the table's order, then Windows by os.version ascending."""
        return (_ORDER[self.name], version_key(self.os_version))

    def matches(self, os: str, architecture: str, variant: str | None,
                os_version: str | None = None) -> bool:
        """Whether an image config's platform fields are this platform (normalized)."""
        try:
            other = from_oci(os, architecture, variant)
        except InputError:
            return False
        if other.name != self.name:
            return False
        if self.os_version:
            return os_version_in_line(os_version, self.os_version)
        return True


_TABLE = (
    Platform("amd64", "linux", "amd64", debian_arch="amd64"),
    Platform("arm32v5", "linux", "arm", "v5", debian_arch="armel"),
    Platform("arm32v6", "linux", "arm", "v6", debian_arch="armel"),
    Platform("arm32v7", "linux", "arm", "v7", debian_arch="armhf"),
    Platform("arm64v8", "linux", "arm64", "v8", debian_arch="arm64"),
    Platform("i386", "linux", "386", debian_arch="i386"),
    Platform("mips64le", "linux", "mips64le", debian_arch="mips64el"),
    Platform("ppc64le", "linux", "ppc64le", debian_arch="ppc64el"),
    Platform("riscv64", "linux", "riscv64", debian_arch="riscv64"),
    Platform("s390x", "linux", "s390x", debian_arch="s390x"),
    Platform("windows-amd64", "windows", "amd64"),
)
PLATFORMS: dict[str, Platform] = {p.name: p for p in _TABLE}
_ORDER = {p.name: i for i, p in enumerate(_TABLE)}

# Names engines and kernels use for the same architectures (docker info, uname -m).
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i686": "386", "i386": "386", "ppc64el": "ppc64le", "mips64el": "mips64le"}
# An arm image with no variant is v7 and an arm64 one v8, as containerd normalizes them.
_DEFAULT_VARIANT = {"arm": "v7", "arm64": "v8"}


# A bare architecture means Linux on it: the table's OCI architectures and the kernel's names.
# Not the dpkg names: armel is arm32v5 and arm32v6 at once.
_BARE = {p.architecture for p in _TABLE if p.os == "linux"} | {"x86_64", "aarch64", "i686"}
_FORMS = "or an OCI platform, linux/arm64, or a bare architecture, arm64"


def platform(name: str) -> Platform:
    """The platform called `name`: its official name (arm64v8), its OCI form (linux/arm64,
    linux/arm/v7) or a bare architecture (arm64); else an InputError listing the known ones."""
    if name in PLATFORMS:
        return PLATFORMS[name]
    parts = name.split("/")
    if len(parts) in (2, 3):
        return from_oci(*parts)
    if name in _BARE:
        return from_oci("linux", name)
    raise InputError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)} ({_FORMS})",
                     field="platform")


def platform_names(values: Iterable[str]) -> tuple[str, ...]:
    """The official names of the platforms `values` give, each a name in any form `platform`
    takes or a comma list of them (`amd64,linux/arm64`), in order and each once."""
    names = (platform(part.strip()).name for value in values for part in value.split(",")
             if part.strip())
    return tuple(dict.fromkeys(names))


def from_oci(os: str, architecture: str, variant: str | None = None) -> Platform:
    """Normalize OCI platform fields (as found in an image config or a list entry) to the table."""
    architecture = _ARCH_ALIASES.get(architecture, architecture)
    variant = variant or _DEFAULT_VARIANT.get(architecture)
    for p in _TABLE:
        if (p.os, p.architecture, p.variant) == (os, architecture, variant):
            return p
    raise InputError(f"unknown platform {oci_text(os, architecture, variant)!r}; "
                     f"known: {', '.join(PLATFORMS)} ({_FORMS})", field="platform")


def oci_text(os: str, architecture: str, variant: str | None = None) -> str:
    """Platform fields as one `os/architecture[/variant]` string, empty fields left out."""
    return "/".join(p for p in (os, architecture, variant) if p)


def version_key(os_version: str | None) -> tuple[int, ...]:
    """A Windows os.version as numbers, for ordering: "10.0.17763.805" → (10, 0, 17763, 805)."""
    return tuple(int(p) for p in (os_version or "").split(".") if p.isdigit())


def os_version_in_line(os_version: str | None, line: str) -> bool:
    """Whether `os_version` (10.0.17763.805) is of the Windows release `line` (10.0.17763)."""
    return bool(os_version) and (os_version == line or os_version.startswith(line + "."))


class PlatformFields(NamedTuple):
    """An image's platform as its documents spell it, not yet normalized through the table."""
    os: str
    architecture: str
    variant: str | None
    os_version: str | None


# `docker inspect` spells the config's keys its own way.
_INSPECT_KEYS = {"os": "Os", "architecture": "Architecture", "variant": "Variant",
                 "os.version": "OsVersion"}


def image_platform(document: Mapping) -> PlatformFields:
    """The platform fields of an image config, a list entry's `platform` object, or the engine's
    `inspect_image` answer; `Platform.matches(*fields)` takes them as they are."""
    inspected = "Architecture" in document or "Os" in document

    def get(key: str) -> str | None:
        return document.get(_INSPECT_KEYS[key] if inspected else key)

    return PlatformFields(get("os") or "", get("architecture") or "", get("variant") or None,
                          get("os.version") or None)
