"""Dockerfile text as the build stage sends it: the FROM images, and FROM lines pinned to digests.

Pure: text in, text out. Pinning every FROM to the per-platform digest of its base keeps the
classic builder from going to docker.io for a base whose local tag has another platform
(docs/classic-builder.md, trap 4).
"""
from __future__ import annotations

import re

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
