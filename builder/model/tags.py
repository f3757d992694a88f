"""Tags and shared tags of each (version, variant), by the official-images rules.

A version answers to its full version, its series and its aliases ("3.8.0",
"3.8", "3", "latest"). Each variant gets those suffixed with its name; the
default Debian suite's variants also get the short forms (`-slim`), the default
alpine `-alpine` (both per version: its own `debian-suite`/`alpine`, else the
family's `defaults:`); `latest-` is dropped, so "latest-buster" is "buster". The
default Debian variant and every Windows variant share the bare version tags,
and the Windows variants share `-windowsservercore` too: one manifest list per
shared tag, holding Linux and Windows images together.

A free-threaded variant (slim-trixie-freethreaded) answers to the version names
with a `t`, as CPython names its free-threaded executables (python3.14t), and not
to `latest`: 3.14.7t-slim-trixie, 3.14t-slim-trixie, 3t-slim-trixie, 3.14t-slim;
the default suite's free-threaded variant holds the bare 3.14t as a plain tag.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # versions checks every tag at load time with the functions here
    from builder.model.platforms import Platform
    from builder.model.versions import Family, Variant, Version


@dataclass(frozen=True)
class VariantTags:
    version: Version
    variant: Variant
    tags: tuple[str, ...]  # "3.8.0-buster", "3.8-buster", "3-buster", "buster"
    shared_tags: tuple[str, ...]  # "3.8.0", "3.8", "3", "latest"


def version_aliases(version: Version) -> tuple[str, ...]:
    """The names a version answers to: full version, series, then its aliases."""
    return _unique((version.full, version.series) + version.aliases)


def _suffixed(aliases: tuple[str, ...], suffix: str) -> list[str]:
    return [_drop_latest(f"{alias}-{suffix}") for alias in aliases]


def _drop_latest(tag: str) -> str:
    return tag.removeprefix("latest-")


def _unique(names) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def variant_tags(family: Family, version: Version, variant: Variant) -> VariantTags:
    aliases = version_aliases(version)
    if variant.free_threaded:
        aliases = tuple(f"{alias}t" for alias in aliases if alias != "latest")
    name = variant.stem
    tags = _suffixed(aliases, name)
    shared: list[str] = []
    suite = family.debian_suite(version)
    if suite and name.endswith("-" + suite):
        tags += _suffixed(aliases, name.removesuffix("-" + suite))
    if family.alpine(version) and name == family.alpine(version):
        tags += _suffixed(aliases, "alpine")
    if variant.is_windows:
        shared += _suffixed(aliases, name.rsplit("-", 1)[0])
    if suite and name == suite and variant.free_threaded:
        tags += aliases  # no Windows build shares 3.14t: it is this variant's own tag
    elif variant.is_windows or (suite and name == suite):
        shared += aliases
    return VariantTags(version=version, variant=variant, tags=_unique(tags),
                       shared_tags=_unique(shared))


def tag_groups(family: Family, version: Version, variants: tuple[str, ...] = (),
               platforms: tuple[Platform, ...] = ()) -> dict[str, tuple[Variant, ...]]:
    """Every tag and shared tag of the version → the variants its manifest list holds.

    With `variants` (names), only the tags whose members all are among them: a release of
    slim-trixie alone publishes `3.14-slim`, not `3.14`, which also holds trixie. With
    `platforms`, each member keeps only those of its platforms, and a member left with none
    drops out: the lists then hold exactly the platforms asked for.
    """
    groups: dict[str, list[Variant]] = {}
    for variant in version.variants:
        computed = variant_tags(family, version, variant)
        for tag in computed.tags + computed.shared_tags:
            groups.setdefault(tag, []).append(variant)
    if variants:
        groups = {tag: members for tag, members in groups.items()
                  if all(m.name in variants for m in members)}
    if platforms:
        wanted = {p.name for p in platforms}
        groups = {tag: [replace(m, platforms=kept) for m in members
                        if (kept := tuple(p for p in m.platforms if p.name in wanted))]
                  for tag, members in groups.items()}
    return {tag: tuple(members) for tag, members in groups.items() if members}
