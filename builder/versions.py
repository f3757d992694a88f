"""Stage 1a: versions.yaml → the image family (Version, Variant), validated.

The loader (``load``) is written by the generate work; the dataclasses below are
the contract every other stage codes against. Fields may be added, not renamed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .platforms import Platform


@dataclass(frozen=True)
class Pip:
    version: str  # "19.3"
    url: str  # the pinned get-pip.py URL
    sha256: str  # of that get-pip.py


@dataclass(frozen=True)
class Variant:
    name: str  # "buster", "slim-buster", "alpine3.10", "windowsservercore-1809"
    directory: str  # under the series directory: "buster/slim", "windows/windowsservercore-1809"
    template: str  # template name: "debian", "slim", "alpine", "windowsservercore"
    base_image: str  # the FROM reference: "buildpack-deps:buster"
    platforms: tuple[Platform, ...]  # Windows platforms carry the variant's os.version
    os_version: str | None = None  # Windows: "10.0.17763"

    @property
    def is_windows(self) -> bool:
        return self.os_version is not None


@dataclass(frozen=True)
class Version:
    full: str  # "3.8.0", "3.9.0a1"
    aliases: tuple[str, ...]  # extra version aliases for tags: ("3", "latest")
    variants: tuple[Variant, ...]
    gpg_key: str | None = None
    pip: Pip | None = None

    @property
    def series(self) -> str:
        """The directory and the major.minor tag: "3.8"."""
        major, minor = self.full.split(".")[:2]
        return f"{major}.{minor}"

    @property
    def release(self) -> str:
        """The full version without a pre-release suffix: "3.9.0" for "3.9.0a1"."""
        return re.match(r"\d+(\.\d+)*", self.full).group(0)

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.release.split("."))

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InputError(f"{self.full} has no variant {name!r}; it has: "
                         f"{', '.join(v.name for v in self.variants)}", field="variant")


@dataclass(frozen=True)
class Family:
    repository: str  # "python"
    versions: tuple[Version, ...]  # newest series first
    source: Path  # the versions file it was read from
    templates: Path  # the templates directory
    default_debian_suite: str | None = None  # "buster": gets -slim and the bare shared tags
    default_alpine: str | None = None  # "alpine3.10": gets the -alpine short tags
    extra: dict = field(default_factory=dict, compare=False)

    def version(self, wanted: str) -> Version:
        """A version by full version ("3.8.0") or series ("3.8")."""
        for v in self.versions:
            if wanted in (v.full, v.series):
                return v
        raise InputError(f"unknown version {wanted!r}; {self.source.name} has: "
                         f"{', '.join(v.full for v in self.versions)}", field="version")
