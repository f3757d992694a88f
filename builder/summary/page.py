"""The summary page's pure renderer: a tag's registry documents in, the page's text out.

The page has exactly the layout of docker-library/repo-info's "remote" pages as of October
2019; docs/summary-page.md describes it, and the section numbers (§3, …) below are its.
`builder.summary.fetch` is the edge that fetches the documents and writes the pages.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from builder.attest.image import without_sbom
from builder.attest.sbom import SPDX_PREDICATE
from builder.attest.statements import PREDICATE_ANNOTATION, REFERENCE_DIGEST, is_attestation
from builder.model.errors import InputError
from builder.model.platforms import image_platform
from builder.model.reference import DOCKER_HUB, LIST_TYPES, ImageRef
from builder.model.versions import image_version, release_key

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SIZE_UNITS = ("B", "KB", "MB", "GB", "TB")


@dataclass(frozen=True)
class Document:
    """A manifest as the registry served it: its media type, its digest, its parsed JSON."""
    media_type: str
    digest: str
    json: Mapping[str, Any]


@dataclass(frozen=True)
class BlobHead:
    """What a HEAD on a layer (or on a foreign layer's first url) told us."""
    size: int | None = None  # Content-Length: only used when the manifest gives no size
    media_type: str | None = None  # Content-Type: likewise
    last_modified: str | None = None  # raw header; None when the server sent none


@dataclass(frozen=True)
class ImageDocuments:
    """One image of the tag: its list entry's platform, manifest, config and layer HEADs."""
    manifest: Document
    config: Mapping[str, Any]
    heads: Mapping[str, BlobHead] = field(default_factory=dict)  # by layer digest
    platform: Mapping[str, Any] | None = None  # the list entry's; None for a single-manifest tag


@dataclass(frozen=True)
class TagDocuments:
    """Everything the page shows. `top` is None when the tag does not exist."""
    name: str  # the reference as the heading shows it: "python:latest"
    repository: str  # the name `docker pull` takes before "@sha256:…": "python"
    top: Document | None
    images: tuple[ImageDocuments, ...] = ()


# --- formatting rules (docs/summary-page.md §3, §6, §7, §8) ------------------------------

def platform_text(platform: Mapping[str, Any]) -> str:
    """`windows version 10.0.17763.805; amd64`, `linux; arm variant v7`."""
    def present(key: str) -> bool:
        return platform.get(key) is not None

    text = str(platform["os"]) if present("os") else "linux"
    if present("os.version"):
        text += f" version {platform['os.version']}"
    if present("os.features"):
        text += " ft. " + ", ".join(platform["os.features"])
    text += "; " + (str(platform["architecture"]) if present("architecture") else "amd64")
    if present("variant"):
        text += f" variant {platform['variant']}"
    if present("features"):
        text += " ft. " + ", ".join(platform["features"])
    return text


def size_short(size: int) -> str:
    """Decimal units; a unit is only left once the value passes 1000 (1000 B stays `1000.0 B`)."""
    unit = 0
    while int(size / 1000 ** unit) > 1000 and unit < len(_SIZE_UNITS) - 1:
        unit += 1
    return "%.1f %s" % (size / 1000 ** unit, _SIZE_UNITS[unit])


def size_text(size: int) -> str:
    """`size_short`, and above 1000 bytes the exact count: `1.2 MB (1234567 bytes)`."""
    text = size_short(size)
    return text if int(size) <= 1000 else f"{text} ({size} bytes)"


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))?$")


def _http_date(moment: datetime | None) -> str:
    if moment is None or moment < _EPOCH:
        moment = _EPOCH
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def created_text(created: str | None) -> str:
    """An RFC 3339 `created` as an HTTP date; fractions of a second are dropped, not rounded.

    A time without a zone is read as UTC, as upstream's generator reads it (not as unparsable).
    Missing or unparsable values, and moments before 1970 (Go's zero time), print the epoch.
    """
    match = _RFC3339.match(created or "")
    if not match:
        return _http_date(None)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = timedelta(0)
    if match.group(8):
        offset = timedelta(hours=int(match.group(9)), minutes=int(match.group(10)))
        offset = -offset if match.group(8) == "-" else offset
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return _http_date(None)
    return _http_date(moment)


def last_modified_text(header: str) -> str:
    """A Last-Modified header (RFC 1123, RFC 850 or asctime) re-printed as RFC 1123 GMT."""
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return _http_date(None)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _http_date(moment)


_JSON_ESCAPE = re.compile(r"\\(u[0-9a-f]{4}|.)")


def json_text(value: Any) -> str:
    """Compact JSON with `/` escaped and `\\u00XX` in upper case, as the reference pages print it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # Outside strings JSON has no `/` and no backslash, so rewriting escapes is safe.
    text = _JSON_ESCAPE.sub(lambda m: "\\" + (m.group(1) if m.group(1)[0] != "u"
                                              else "u" + m.group(1)[1:].upper()), text)
    return text.replace("/", "\\/")


def history_text(created_by: str | None, shell: list[str] | None) -> str:
    """A classic-builder `created_by` as the Dockerfile instruction it came from
    (docs/summary-page.md §5.1)."""
    if created_by is None:
        return "RUN "
    prefixes = ["/bin/sh -c "]
    if shell:
        prefixes.append(" ".join(shell) + " ")
    text = created_by
    lines = []
    alternatives = "|".join(re.escape(p) for p in prefixes)
    build_args = re.match(rf"\|\d+ (.*?) (?={alternatives})", text)
    if build_args:
        lines.append(f"# ARGS: {build_args.group(1)}")
        text = text[build_args.end():]
    if text.startswith("|"):
        return "# unable to parse image command string further:\n" + text
    for prefix in prefixes:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    nop = re.match(r"#\(nop\) +", text)
    text = text[nop.end():] if nop else "RUN " + text
    lines.append(text)
    return "\n".join(lines)


# --- the page (docs/summary-page.md §2, §4, §5, §9) -------------------------------------

def _pull_block(repository: str, digest: str) -> list[str]:
    return ["```console", f"$ docker pull {repository}@{digest}", "```", ""]


def no_sbom(entry: Mapping[str, Any], manifest: Mapping[str, Any],
            entries: Sequence[Mapping[str, Any]]) -> str | None:
    """What the section of the list entry `entry` (whose manifest is `manifest`) says of a
    missing SBOM: for an attestation manifest without one, "No SBOM" and, when it is about a
    Windows image, why; None for any other entry."""
    kinds = {(layer.get("annotations") or {}).get(PREDICATE_ANNOTATION)
             for layer in manifest.get("layers") or []}
    if not is_attestation(entry) or SPDX_PREDICATE in kinds:
        return None
    about = entry["annotations"].get(REFERENCE_DIGEST)
    image = next((e for e in entries if e.get("digest") == about), {})
    why = without_sbom((image.get("platform") or {}).get("os", ""))
    return "No SBOM" + (f": {why}; this attestation manifest holds the provenance alone"
                        if why else " in this attestation manifest")


def _image_section(tag: TagDocuments, image: ImageDocuments, platform: Mapping[str, Any],
                   newest: str | None, entry: Mapping[str, Any]) -> list[str]:
    manifest, config = image.manifest.json, image.config
    container = config.get("config") or {}
    lines = ["", f"### `{tag.name}` - {platform_text(platform)}", ""]
    if image.platform is not None:
        lines += _pull_block(tag.repository, image.manifest.digest)
    version = image_version(config, tag.repository)
    if newest and version and version != newest:
        lines.append(f"-\tLagging: `{version}`; the tag's newest members are `{newest}`")
    missing = no_sbom(entry, manifest, (tag.top.json.get("manifests") or []) if tag.top else [])
    if missing:
        lines.append(f"-\t{missing}")
    layers = []
    for layer in manifest.get("layers") or []:
        head = image.heads.get(layer["digest"], BlobHead())
        size = layer.get("size", head.size)
        layers.append((layer["digest"], head.last_modified, size,
                       layer.get("mediaType") or head.media_type or ""))
    if config.get("docker_version") and config["docker_version"] != "0":
        lines.append(f"-\tDocker Version: {config['docker_version']}")
    lines.append(f"-\tManifest MIME: `{image.manifest.media_type}`")
    total = sum(size for _, _, size, _ in layers if size is not None)
    lines.append(f"-\tTotal Size: **{size_text(total)}**  ")
    lines.append("\t(compressed transfer size, not on-disk size)")
    lines.append(f"-\tImage ID: `{manifest['config']['digest']}`")
    if container.get("Entrypoint"):
        lines.append(f"-\tEntrypoint: `{json_text(container['Entrypoint'])}`")
    if container.get("Cmd") is not None:
        lines.append(f"-\tDefault Command: `{json_text(container['Cmd'])}`")
    if container.get("Shell") is not None:
        lines.append(f"-\t`SHELL`: `{json_text(container['Shell'])}`")
    lines += ["", "```dockerfile"]
    for entry in config.get("history") or []:
        lines.append(f"# {created_text(entry.get('created'))}")
        lines.append(history_text(entry.get("created_by"), container.get("Shell")))
    lines += ["```", "", "-\tLayers:"]
    for digest, last_modified, size, media_type in layers:
        lines.append(f"\t-\t`{digest}`  ")
        if last_modified is not None:
            lines.append(f"\t\tLast Modified: {last_modified_text(last_modified)}  ")
        if size is not None:
            lines.append(f"\t\tSize: {size_text(size)}  ")
        lines.append(f"\t\tMIME: {media_type}")
    return lines


def render(tag: TagDocuments) -> str:
    """The page text, ending in exactly one newline."""
    lines = [f"## `{tag.name}`", ""]
    if tag.top is None:
        return "\n".join(lines + ["**does not exist** (yet?)"]) + "\n"
    lines += _pull_block(tag.repository, tag.top.digest)
    if tag.top.media_type in LIST_TYPES:
        lines.append(f"-\tManifest MIME: `{tag.top.media_type}`")
        platforms = [image.platform or {} for image in tag.images]
    else:
        # A single image names its platform from its config, without the variant.
        platforms = [_config_platform(image.config) for image in tag.images]
    lines.append("-\tPlatforms:")
    lines += [f"\t-\t{platform_text(p)}" for p in platforms]
    # A tag published with lagging members holds images of two versions: the older are named.
    versions = {v for v in (image_version(image.config, tag.repository) for image in tag.images)
                if v}
    newest = max(versions, key=release_key) if len(versions) > 1 else None
    entries = (tag.top.json.get("manifests") or []) if tag.top.media_type in LIST_TYPES else []
    for index, (image, platform) in enumerate(zip(tag.images, platforms)):
        lines += _image_section(tag, image, platform, newest,
                                entries[index] if index < len(entries) else {})
    return "\n".join(lines) + "\n"


def _config_platform(config: Mapping[str, Any]) -> dict:
    fields = image_platform(config)
    return {"os": fields.os or None, "architecture": fields.architecture or None}


def page_path(ref: ImageRef, out_dir: str | Path) -> Path:
    """`<out>/<repository>/remote/<tag>.md`, the layout repo-info publishes."""
    if not ref.tag:
        raise InputError(f"{ref}: a page is filed under its tag; give a tag, not only a digest",
                         field="IMAGE_REF")
    repository = ref.repository
    if ref.registry == DOCKER_HUB:
        repository = repository.removeprefix("library/")
    return Path(out_dir) / repository / "remote" / f"{ref.tag}.md"
