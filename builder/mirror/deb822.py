"""Debian's control-file format (deb822), as `apt-cache showsrc` prints source stanzas and as a
.dsc is written: the fields of each stanza and the files its Checksums-Sha256 names (pure).
"""
from __future__ import annotations

from dataclasses import dataclass

from builder.mirror import layout


@dataclass(frozen=True)
class SourceEntry:
    package: str
    version: str  # Debian's: "3.13.5-2+deb13u5"
    files: tuple[tuple[str, str], ...]  # (name, sha256) from Checksums-Sha256


def fields(stanza: str) -> dict[str, str]:
    """One stanza's fields; a continuation line (leading space) joins its field on a new line."""
    found: dict[str, str] = {}
    current = None
    for line in stanza.splitlines():
        if line.startswith((" ", "\t")) and current:
            found[current] += "\n" + line.strip()
        elif ":" in line:
            current, _, value = line.partition(":")
            found[current] = value.strip()
    return found


def sha256_files(stanza: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(name, sha256) of each row of Checksums-Sha256 (`<sha256> <size> <name>`)."""
    return tuple((parts[2], parts[0]) for parts in
                 (row.split() for row in stanza.get("Checksums-Sha256", "").splitlines())
                 if len(parts) == 3)


def parse_showsrc(text: str) -> list[SourceEntry]:
    """`apt-cache showsrc` output → its source stanzas."""
    entries = []
    for stanza in map(fields, text.split("\n\n")):
        if "Package" in stanza and "Version" in stanza:
            entries.append(SourceEntry(stanza["Package"], stanza["Version"], sha256_files(stanza)))
    return entries


def parse_dsc(text: str) -> SourceEntry | None:
    """A .dsc's signed text (what gpgv verified, without the armor) → its entry; None when it
    has no Source and Version."""
    stanza = fields(text)
    if "Source" not in stanza or "Version" not in stanza:
        return None
    return SourceEntry(stanza["Source"], stanza["Version"], sha256_files(stanza))


def choose_source(entries: list[SourceEntry], version: str) -> SourceEntry | None:
    """The source package holding upstream's `version` as its orig tarball, preferring one that
    also holds the signature."""
    orig = layout.debian_orig_name(version)
    holding = [e for e in entries if orig in dict(e.files)]
    signed = [e for e in holding if orig + ".asc" in dict(e.files)]
    return (signed or holding or [None])[0]


def dsc_name(version: str, entries: list[SourceEntry]) -> str:
    """The .dsc of upstream's `version` in the pool: an entry's of that release when the index
    lists one, else the first upload's, `-1`, the Debian revision a new upstream release
    starts at (the pool has no listing to find it in; any revision carries the same orig)."""
    listed = [e.version for e in entries if e.version.rsplit("-", 1)[0] == version]
    revision = listed[0] if listed else f"{version}-1"
    return f"{layout.debian_source_package(version)}_{revision}.dsc"
