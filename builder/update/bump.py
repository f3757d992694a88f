"""The bump: move each series of versions.yaml to the newest release a python.org-layout tree
offers, verified, with a minimal edit of the file (the `update` command then regenerates).

The edges of the bump: HTTP (listings, files, keys, with the mirror's download helper), sha256
and gpg (builder.mirror.verify), the write. What to choose and how to edit is
builder.update.index. Everything is fetched and checked before anything is written, so a bad
source leaves versions.yaml as it was. A source that cannot be fetched or read is
`SourceUnreachable` (exit 4), told apart from a file that fails its check (exit 1).
"""
from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urljoin

from builder.update import debian
from builder.update import index as releases
from builder.generate import render
from builder.model import versions
from builder.model import yamldoc
from builder.model.errors import EXIT_PARTIAL, BuilderError, SourceUnreachable, VerificationError
from builder.model.files import write_atomic
from builder.mirror import layout
from builder.mirror.fill import download
from builder.mirror.verify import check_signature, export_key, sha256_file
from builder.model.versions import Version
from builder.update.index import SeriesResult

DEBIAN = "debian"  # the source that is Debian's archive, not a python.org-layout tree

HKP_PORT = 11371  # a keyserver named without a port, as gpg assumes for hkp://


@dataclass(frozen=True)
class Bumped:
    """What the bump found, and what it did to the versions file."""
    series: tuple[SeriesResult, ...]
    diff: str = ""  # of the versions file
    stale: tuple[str, ...] = ()  # dry run: the Dockerfiles the bump would have regenerated
    rewritten: bool = False  # the versions file was written: the tree is to be regenerated


def bump(path: Path, series: tuple[str, ...], source: str, out: TextIO, *, check: bool = False,
         dry_run: bool = False) -> Bumped:
    """Bump `series` of the versions file at `path` (all of them for ()) to the newest
    releases `source` lists; `check`: compare only; `dry_run`: print the diff, write nothing."""
    family = versions.load(path)
    chosen = [family.version(s) for s in series] if series else list(family.versions)
    if source == DEBIAN:
        results = debian.results(chosen, path, check)
    else:
        results = _from_listing(source.rstrip("/") + "/", chosen, path, check)
    for result in results:
        print(_describe(result, check), file=out)
    if check or not any(r.new for r in results):
        return Bumped(tuple(results))

    text = path.read_text(encoding="utf-8")
    bumps = [releases.Bump(r.series, r.new, r.sha256, r.windows_sha256) for r in results if r.new]
    changes = releases.changes(family, yamldoc.load(path), bumps)
    new_text = releases.edit(text, changes, str(path))
    new_family = _validated(new_text, family)
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True),
                                        new_text.splitlines(keepends=True),
                                        f"a/{path.name}", f"b/{path.name}"))
    if dry_run:
        print(diff, end="", file=out)
        stale = [str(name) for name, dockerfile in render.render(new_family).items()
                 if not (path.parent / name).is_file()
                 or (path.parent / name).read_text(encoding="utf-8") != dockerfile]
        for name in stale:
            print(f"would write {path.parent / name}", file=out)
        return Bumped(tuple(results), diff, tuple(stale))
    write_atomic(path, new_text)
    changed = sum(1 for line in diff.splitlines() if line.startswith("+") and line[:3] != "+++")
    print(f"rewrote {path}: {changed} line(s) changed", file=out)
    return Bumped(tuple(results), diff, rewritten=True)


def _from_listing(source: str, chosen: list[Version], path: Path,
                  check: bool) -> list[SeriesResult]:
    """Each series' result against a python.org-layout tree."""
    with tempfile.TemporaryDirectory(prefix="pib-update-") as work:
        work = Path(work)
        index = _listing(source, work)
        found = [(version, *_newest(source, version, index, work)) for version in chosen]
        results = []
        for version, newest, listing in found:
            if newest is None:
                results.append(SeriesResult(version.series, version.full, None,
                                            note=f"{source} lists no release of {version.series}"))
            elif releases.release_key(newest) <= releases.release_key(version.full):
                completed = (_completed_windows(source, version, listing, work, path, check)
                             if newest == version.full else None)
                results.append(completed or SeriesResult(
                    version.series, version.full, None,
                    note=f"up to date (newest in the source: {newest})"))
            elif check:
                results.append(SeriesResult(version.series, version.full, newest))
            else:
                results.append(_verified(source, version, newest, listing, work, path))
        return results


def _newest(source: str, version: Version, index: releases.Listing,
            work: Path) -> tuple[str | None, releases.Listing | None]:
    """The series' newest release in the source and its directory's listing. Directories are
    read newest first, up to the first holding a final release."""
    found: dict[str, releases.Listing] = {}
    for directory in releases.release_directories(index, version.series):
        found[directory] = _listing(f"{source}{directory}/", work)
        if releases.newest({directory: found[directory]}) == directory:
            break
    newest = releases.newest(found)
    return newest, (found[layout.release_directory(newest)] if newest else None)


def _verified(source: str, version: Version, new: str, listing: releases.Listing, work: Path,
              versions_path: Path) -> SeriesResult:
    """The new release's values, once its tarball hashed, agreed with any checksum file the
    source offers, and (for a signed series) carried a good signature by the series' key."""
    base = f"{source}{layout.release_directory(new)}/"
    name = layout.tarball_name(new)
    refused = f"{versions_path} not written"
    tarball = _get(base + name, work / name)
    sha256 = sha256_file(tarball)
    chain = [f"{url} agrees" for url, _ in _check_checksum_file(base, name, listing, sha256,
                                                                 work, refused)]
    if version.gpg_key:
        if f"{name}.asc" not in listing.files:
            raise VerificationError(f"{base}: lists no {name}.asc, but {version.series} is "
                                    f"signed (gpg-key {version.gpg_key}); {refused}")
        signature = _get(f"{base}{name}.asc", work / f"{name}.asc")
        try:
            check_signature(tarball, signature, _key(source, version, work), version.gpg_key,
                            base + name)
        except VerificationError as error:
            raise VerificationError(f"{error}; {refused}") from None
        chain.append(f"upstream signature by {version.gpg_key}")
    windows_sha256 = windows_kept = None
    if version.windows_sha256 is not None and any(v.is_windows for v in version.variants):
        installer = releases.windows_installer_name(new)
        if installer in listing.files:
            # No .asc check: python.org's installers are signed by the Windows release manager,
            # not the series' gpg-key (and Authenticode-signed); the sha256 pins what builds.
            windows_sha256 = sha256_file(_get(base + installer, work / installer))
            _check_checksum_file(base, installer, listing, windows_sha256, work, refused)
        else:
            windows_kept = f"{base} lists no {installer}"
    return SeriesResult(version.series, version.full, new, sha256=sha256,
                        windows_sha256=windows_sha256, windows_kept=windows_kept,
                        chain="; ".join(chain) or f"only the download's own sha256 ({base + name})")


def _check_checksum_file(base: str, name: str, listing: releases.Listing, sha256: str,
                         work: Path, refused: str) -> list[tuple[str, str]]:
    """Each checksum file the source lists beside `name` (`.sha256`, python.org's `.spdx.json`)
    must agree with the file itself: the file is always hashed, so a stale or tampered checksum
    file is caught, not copied into versions.yaml. Returns those that agreed."""
    listed = _listed_checksums(base, name, listing, work, refused)
    for url, given in listed:
        if given != sha256:
            raise VerificationError(f"{url}: gives sha256 {given}, but {base}{name} has "
                                    f"{sha256}; refused, {refused}")
    return listed


def _listed_checksums(base: str, name: str, listing: releases.Listing, work: Path,
                      refused: str) -> list[tuple[str, str]]:
    """(URL, sha256) of each checksum file the listing offers beside `name`."""
    found = []
    for suffix, parse in releases.CHECKSUM_FILES:
        if f"{name}{suffix}" not in listing.files:
            continue
        url = f"{base}{name}{suffix}"
        checksum_file = _get(url, work / f"{name}{suffix}")
        try:
            found.append((url, parse(checksum_file.read_text(errors="replace"), name)))
        except releases.ListingError as error:
            raise VerificationError(f"{url}: {error}; {refused}") from None
    return found


def _completed_windows(source: str, version: Version, listing: releases.Listing, work: Path,
                       versions_path: Path, check: bool) -> SeriesResult | None:
    """A version already at the newest release whose windows-sha256 a checksum file of the
    source contradicts (a partial update, now that the source has the installer): the
    installer's sha256, verified; None when nothing says it is stale. Only a checksum file is
    read to decide, so an up-to-date run downloads no installer."""
    installer = releases.windows_installer_name(version.full)
    if version.windows_sha256 is None or not any(v.is_windows for v in version.variants) \
            or installer not in listing.files:
        return None
    base = f"{source}{layout.release_directory(version.full)}/"
    refused = f"{versions_path} not written"
    listed = _listed_checksums(base, installer, listing, work, refused)
    if not listed or all(given == version.windows_sha256 for _, given in listed):
        return None
    if check:
        return SeriesResult(version.series, version.full, version.full,
                            windows_sha256=listed[0][1], note=f"{listed[0][0]} differs")
    windows_sha256 = sha256_file(_get(base + installer, work / installer))
    _check_checksum_file(base, installer, listing, windows_sha256, work, refused)
    return SeriesResult(version.series, version.full, version.full, sha256=version.sha256,
                        windows_sha256=windows_sha256)


def _key(source: str, version: Version, work: Path) -> bytes:
    """The series' key, armored: from the source's keys/ beside python/ (as this project's
    mirror serves them), else from the version's keyserver; it must carry the fingerprint."""
    fingerprint = version.gpg_key
    urls = [urljoin(source, f"../{layout.KEYS}/{fingerprint}.asc")]
    if version.keyserver:
        urls.append(hkp_url(version.keyserver, fingerprint))
    tried = []
    for i, url in enumerate(urls):
        try:
            key_file = download(url, work / f"key-{i}-{fingerprint}.asc")
        except BuilderError as error:
            tried.append(str(error))
            continue
        if key_file is None:
            tried.append(f"GET {url}: 404")
            continue
        return export_key(key_file, fingerprint, url)
    raise BuilderError(f"no key {fingerprint} for {version.series}: {'; '.join(tried)}")


def hkp_url(keyserver: str, fingerprint: str) -> str:
    """The HKP lookup of a key, as gpg --recv-keys makes it: hkps:// is https, hkp:// (or a bare
    host) is http on port 11371 unless one is given."""
    scheme, _, host = keyserver.rpartition("://")
    web = "https" if scheme == "hkps" else "http"
    if web == "http" and ":" not in host:
        host = f"{host}:{HKP_PORT}"
    return f"{web}://{host}/pks/lookup?op=get&options=mr&search=0x{fingerprint}"


def _get(url: str, path: Path) -> Path:
    """`url` into `path`; an error on the way (no answer, an HTTP error) is the source's."""
    try:
        return download(url, path, required=True)
    except BuilderError as error:
        raise SourceUnreachable(str(error)) from None


def _listing(url: str, work: Path) -> releases.Listing:
    page = _get(url, work / "listing.html")
    try:
        return releases.parse_listing(page.read_text(errors="replace"))
    except releases.ListingError as error:
        raise SourceUnreachable(f"{url}: {error}; nothing written") from None


def _validated(text: str, family: versions.Family) -> versions.Family:
    """The rewritten file, loaded and validated as every command loads it, before it is written."""
    with tempfile.TemporaryDirectory(prefix="pib-update-") as directory:
        candidate = Path(directory) / family.source.name
        candidate.write_text(text, encoding="utf-8")
        return versions.load(candidate, family.templates)


def _describe(result: SeriesResult, check: bool) -> str:
    if not result.new:
        return f"{result.series}: {result.old}, {result.note}"
    if result.new == result.old:  # the rest of a partial update: the installer is there now
        return (f"{result.series}: {result.old}, windows-sha256 → {result.windows_sha256}"
                + (f" available ({result.note})" if check else ""))
    if check:
        return f"{result.series}: {result.old} → {result.new} available"
    line = f"{result.series}: {result.old} → {result.new} (sha256 {result.sha256}"
    line += f", accepted by {result.chain})" if result.chain else ")"
    if result.windows_sha256:
        line += f", windows-sha256 {result.windows_sha256}"
    if result.windows_kept:
        line += (f"; windows-sha256 kept, not bumped: {result.windows_kept}; its Windows variants "
                 f"fail their installer check until it is set (partial, exit {EXIT_PARTIAL})")
    return line
