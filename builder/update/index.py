"""Version bumps, pure: a python.org-layout listing → the newest release of a series → the
edit of versions.yaml that moves the series to it.

No HTTP, gpg or files here: `builder.update.bump` fetches the listings and the files, checks them,
and hands the values in.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

from builder.model import yamldoc
from builder.model.errors import InputError
from builder.mirror import layout
from builder.model.versions import FINAL, RELEASE_NUMBER, Family, release_key


class ListingError(ValueError):
    """What the source served does not read as a listing or a checksum file; the caller names
    the URL."""


@dataclass(frozen=True)
class Listing:
    """One directory of the tree: its subdirectories and files, by name."""
    directories: tuple[str, ...]
    files: tuple[str, ...]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def parse_listing(html: str) -> Listing:
    """An autoindex page (nginx's, as python.org serves ftp/python/, or this project's mirror)
    → its entries. A link ending in / is a directory; links out of the directory (../, ?C=…
    sort links, other hosts) are not entries."""
    if not re.search(r"<a\s", html, re.IGNORECASE):
        raise ListingError("not an HTML directory listing: it has no <a href> links")
    parser = _Links()
    parser.feed(html)
    parser.close()
    directories, files = [], []
    for href in parser.hrefs:
        path = href.split("?", 1)[0].split("#", 1)[0]
        if not path or "://" in href or path.startswith("..") or path in ("/", "./"):
            continue
        is_directory = path.endswith("/")
        name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
        if name and not name.startswith("."):
            (directories if is_directory else files).append(name)
    return Listing(tuple(directories), tuple(files))


def series_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def release_directories(index: Listing, series: str) -> list[str]:
    """The index's X.Y.Z/ directories of `series`, newest first."""
    found = [name for name in index.directories
             if re.fullmatch(r"\d+\.\d+\.\d+", name) and series_of(name) == series]
    return sorted(found, key=release_key, reverse=True)


def windows_installer_name(version: str) -> str:
    return f"python-{version}-amd64.exe"


def releases_in(directory: str, listing: Listing) -> list[str]:
    """The releases whose tarball a release directory holds, newest first: 3.14.0/ may hold
    3.14.0, 3.14.0rc3, … 3.14.0a1."""
    found = []
    for name in listing.files:
        match = re.fullmatch(r"Python-(.+)\.tar\.xz", name)
        if match and RELEASE_NUMBER.fullmatch(match.group(1)) and \
                layout.release_directory(match.group(1)) == directory:
            found.append(match.group(1))
    return sorted(found, key=release_key, reverse=True)


def newest(found: dict[str, Listing]) -> str | None:
    """The newest final release among release directories (name → listing) of one series;
    a series with no final release yet takes its newest pre-release, as upstream does for the
    coming series. None when no directory holds a tarball."""
    every = [r for directory, listing in found.items() for r in releases_in(directory, listing)]
    finals = [r for r in every if release_key(r)[3] == FINAL]
    chosen = finals or every
    return max(chosen, key=release_key) if chosen else None


def parse_checksum_file(text: str, name: str) -> str:
    """A `<file>.sha256` as sha256sum writes it (`<hex>  <name>`) or the bare digest."""
    for line in text.splitlines():
        parts = line.split()
        if parts and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]) and \
                (len(parts) == 1 or parts[-1].lstrip("*") == name):
            return parts[0].lower()
    raise ListingError(f"no sha256 for {name} in it")


def parse_spdx(text: str, name: str) -> str:
    """The sha256 python.org's SBOM (`<file>.spdx.json`, from 3.12.2) gives for `name`: the
    package whose packageFileName it is."""
    try:
        document = json.loads(text)
        for package in document.get("packages", []):
            if package.get("packageFileName") == name:
                for checksum in package.get("checksums", []):
                    value = str(checksum.get("checksumValue", ""))
                    if checksum.get("algorithm") == "SHA256" and \
                            re.fullmatch(r"[0-9a-fA-F]{64}", value):
                        return value.lower()
    except (ValueError, AttributeError, TypeError):
        raise ListingError("not an SPDX JSON document") from None
    raise ListingError(f"no SHA256 checksum of a package {name} in it")


# How each checksum file a release directory may offer beside a file is read: `<file><suffix>`.
CHECKSUM_FILES = ((".sha256", parse_checksum_file), (".spdx.json", parse_spdx))


@dataclass(frozen=True)
class SeriesResult:
    series: str  # "3.13"
    old: str  # "3.13.5"
    new: str | None  # "3.13.14"; None: up to date, or the source has none of the series;
    # == old: only windows-sha256 changes (the rest of an earlier partial update)
    sha256: str | None = None
    windows_sha256: str | None = None  # the installer's; None: unchanged
    windows_kept: str | None = None  # why windows-sha256 was not bumped (a partial update)
    note: str | None = None  # "up to date", "the source lists no release of 3.13"
    chain: str | None = None  # what vouched for the new tarball: "python.org checksum files", …


# --- the edit of versions.yaml ---------------------------------------------------------------

@dataclass(frozen=True)
class Bump:
    """A series' move to a verified release: the values versions.yaml gets."""
    series: str  # "3.13"
    new: str  # "3.13.14"
    sha256: str
    windows_sha256: str | None = None  # None: windows-sha256 stays as it is


@dataclass(frozen=True)
class Change:
    """One value to replace: the field `key` written on `line` (1-based) of versions.yaml."""
    line: int
    key: str  # "version", "sha256", "windows-sha256"
    old: str
    new: str


def changes(family: Family, doc: yamldoc.Doc, bumps: list[Bump]) -> list[Change]:
    """The values to replace for `bumps`, on the lines `doc` (the family's file) holds them."""
    found = []
    for bump in bumps:
        index, version = next((i, v) for i, v in enumerate(family.versions)
                              if v.series == bump.series)
        where = ("versions", index)
        values = [("version", version.full, bump.new), ("sha256", version.sha256, bump.sha256)]
        if bump.windows_sha256:
            values.append(("windows-sha256", version.windows_sha256, bump.windows_sha256))
        for key, old, new in values:
            if old is None:
                raise doc.error(where, f"{version.full} has no {key}: line to rewrite; add one")
            if old != new:
                found.append(Change(doc.lines[where + (key,)], key, old, new))
    return found


def edit(text: str, replacements: list[Change], source: str) -> str:
    """`text` with each change's value replaced on its line and nothing else touched: comments,
    anchors, quoting, order and layout stay as written, so the diff is the changed lines."""
    lines = text.splitlines(keepends=True)
    for change in replacements:
        line = lines[change.line - 1]
        # The key, then the value as written: plain or quoted, ended by space, comma, }, # or EOL.
        pattern = re.compile(rf"((?:^|[\s{{,]){re.escape(change.key)}\s*:\s+)(['\"]?)"
                             rf"{re.escape(change.old)}\2(?=[\s,}}#]|$)")
        matches = list(pattern.finditer(line))
        if len(matches) != 1:
            raise InputError(f"cannot find {change.key}: {change.old} on this line to replace it; "
                             "write it as `key: value` on one line", source=source,
                             line=change.line, field=change.key)
        match = matches[0]
        quote = match.group(2)
        lines[change.line - 1] = (line[:match.start()] + match.group(1) + quote + change.new
                                  + quote + line[match.end():])
    return "".join(lines)
