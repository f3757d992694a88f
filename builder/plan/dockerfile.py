"""Dockerfile text as the build stage sends it: FROM lines pinned to digests, upstream URLs
rewritten to their mirrors.

Pure: text in, text out. Pinning every FROM to the per-platform digest of its base keeps the
classic builder from going to docker.io for a base whose local tag has another platform
(docs/classic-builder.md, trap 4). Rewriting upstream prefixes (python.org, the keyserver) to
the builders file's mirrors lets a build run offline with the committed Dockerfile unchanged.
"""
from __future__ import annotations

import re

from builder.model.mirrors import Mirror

# `FROM [--platform=…] image [AS name]`, one instruction per line in our templates.
_FROM_RE = re.compile(r"^(?P<head>[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*)(?P<image>\S+)(?P<tail>.*)$",
                      re.IGNORECASE | re.MULTILINE)


def from_images(dockerfile_text: str) -> list[str]:
    """The image of every FROM line, stage names and `scratch` left out."""
    stages: set[str] = set()
    images = []
    for match in _FROM_RE.finditer(dockerfile_text):
        image = match.group("image")
        alias = re.match(r"\s+AS\s+(\S+)", match.group("tail"), re.IGNORECASE)
        if image.lower() != "scratch" and image not in stages:
            images.append(image)
        if alias:
            stages.add(alias.group(1))
    return images


def rewrite_from(dockerfile_text: str, pinned: dict[str, str]) -> str:
    """Replace FROM images by their pinned references (`image` → `mirror/lib/x@sha256:…`)."""
    def replace(match: re.Match) -> str:
        image = match.group("image")
        return match.group("head") + pinned.get(image, image) + match.group("tail")
    return _FROM_RE.sub(replace, dockerfile_text)


def rewrite_urls(dockerfile: str, mirrors: tuple[Mirror, ...]) -> tuple[str, tuple[Mirror, ...]]:
    """`dockerfile` with every upstream prefix replaced by its mirror's url, and the mirrors used.

    An upstream without a trailing / matches only as a whole host (hkps://keys.openpgp.org,
    not hkps://keys.openpgp.org.example or :8443).
    """
    used = []
    for mirror in mirrors:
        boundary = "" if mirror.upstream.endswith("/") else r"(?![A-Za-z0-9.:-])"
        dockerfile, count = re.subn(re.escape(mirror.upstream) + boundary,
                                    lambda _: mirror.url, dockerfile)
        if count:
            used.append(mirror)
    return dockerfile, tuple(used)


def needs_host_network(used: tuple[Mirror, ...]) -> bool:
    """Whether a build using these mirrors must share the host's network to reach them."""
    return any(m.loopback for m in used)

