"""`update --source debian`: each series' newest release Debian's archive can vouch for.

Debian's index names the uploads it lists now; their files may be gone from the pool, and a
release it no longer lists may still be there. So the releases from the newest the index
names down to the series' current one are tried newest first, each from the pool: the first
whose upload's signed .dsc verifies (builder.mirror.debian.signed_upload) and names the orig
tarball with the sha256 the download has wins. A signed series also needs upstream's .asc,
good by the series' key. A file that is there but fails its check refuses the whole update.
"""
from __future__ import annotations

import re
from pathlib import Path

from builder.mirror import layout
from builder.mirror.debian import DebianArchive, pool_url, signed_upload
from builder.mirror.deb822 import SourceEntry
from builder.mirror.fill import download
from builder.mirror.verify import check_signature, export_key
from builder.model.errors import BuilderError, SourceUnreachable, VerificationError
from builder.model.files import cache_dir
from builder.model.versions import Version, release_key
from builder.update.index import SeriesResult, series_of

NO_INSTALLER = "Debian's archive carries no Windows installer"


def results(chosen: list[Version], versions_path: Path, check: bool,
            archive: DebianArchive | None = None) -> list[SeriesResult]:
    """Each chosen series' result against Debian's archive (apt's state kept in the cache, so
    a second run reads the index without downloading it again)."""
    archive = archive or DebianArchive(cache_dir() / "update-debian")
    try:
        return [_series(archive, version, versions_path, check) for version in chosen]
    except BuilderError as error:
        if isinstance(error, VerificationError):
            raise VerificationError(f"{error}; {versions_path} not written") from None
        raise SourceUnreachable(f"Debian's archive: {error}; {versions_path} not written") from None


def listed_releases(entries: list[SourceEntry], series: str) -> list[str]:
    """The final releases of `series` the index's uploads hold, newest first."""
    found = {entry.version.rsplit("-", 1)[0] for entry in entries}
    return sorted((v for v in found if re.fullmatch(r"\d+\.\d+\.\d+", v) and series_of(v) == series),
                  key=release_key, reverse=True)


def candidates(newest: str, current: str) -> list[str]:
    """The patch releases after `current` up to `newest`, newest first: 3.14.10 … 3.14.7."""
    series, low, high = series_of(newest), int(current.split(".")[2]), int(newest.split(".")[2])
    return [f"{series}.{patch}" for patch in range(high, low, -1)]


def _series(archive: DebianArchive, version: Version, versions_path: Path,
            check: bool) -> SeriesResult:
    entries = archive.entries(version.full)
    listed = listed_releases(entries, version.series)
    if not listed:
        return SeriesResult(version.series, version.full, None,
                            note=f"Debian's index lists no release of {version.series}")
    if release_key(listed[0]) <= release_key(version.full):
        return SeriesResult(version.series, version.full, None,
                            note=f"up to date (newest in Debian's index: {listed[0]})")
    passed = []
    for candidate in candidates(listed[0], version.full):
        found = _vouched(archive, version, candidate, entries)
        if isinstance(found, str):
            passed.append(f"{candidate} {found}")
            continue
        sha256, chain = found
        kept = NO_INSTALLER if version.windows_sha256 and any(
            v.is_windows for v in version.variants) and not check else None
        return SeriesResult(version.series, version.full, candidate, sha256=sha256,
                            windows_kept=kept, chain=chain)
    return SeriesResult(version.series, version.full, None,
                        note=f"up to date: Debian's index names {listed[0]}, but "
                             f"{'; '.join(passed)}")


def _vouched(archive: DebianArchive, version: Version, candidate: str,
             entries: list[SourceEntry]) -> tuple[str, str] | str:
    """(sha256, the chain that vouched for it) of `candidate`'s tarball, or why it cannot be
    had (not in the pool, no .dsc, no upstream signature for a signed series)."""
    pool = pool_url(archive.archive, candidate)
    orig = layout.debian_orig_name(candidate)
    target = archive.downloads / "update" / candidate
    tarball = download(f"{pool}/{orig}", target / orig)
    if tarball is None:
        return f"is not in the pool ({pool}/{orig}: 404)"
    upload = signed_upload(pool, candidate, tarball, entries, target)
    if upload is None:
        return "has no .dsc in the pool to vouch for it"
    chain = [upload.chain]
    for entry in entries:
        listed = dict(entry.files).get(orig)
        if listed and listed != upload.sha256:
            raise VerificationError(f"Debian's index gives {orig} sha256 {listed}, but its "
                                    f"signed .dsc and the download have {upload.sha256}")
        if listed:
            chain.append("Debian's signed index (apt) agrees")
            break
    if version.gpg_key:
        signature = download(f"{pool}/{orig}.asc", target / f"{orig}.asc")
        key_file = archive.listed_signing_key(pool, entries, target)
        if signature is None or key_file is None:
            return (f"has no upstream signature{'' if signature is None else ' key'} in the "
                    f"pool, and {version.series} is signed (gpg-key {version.gpg_key})")
        key = export_key(key_file, version.gpg_key, f"{pool}/{orig}")
        check_signature(tarball, signature, key, version.gpg_key, f"{pool}/{orig}")
        chain.append(f"upstream signature by {version.gpg_key}")
    return upload.sha256, "; ".join(chain)
