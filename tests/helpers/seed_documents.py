"""Test code: the registry documents behind the seed page, rebuilt from the page itself.

The seed (repo-info's `python:latest` page of October 2019) shows every value the
renderer needs, in printed form. This module turns each printed value back into
what a registry served in 2019: manifests with the seed's digests, configs whose
history `created_by` strings are written the way the classic builder wrote them,
and layer HEADs with Last-Modified headers. The renderer must then print the seed
back byte for byte; it never sees this module.
"""
from __future__ import annotations

import json
import re
from datetime import datetime

from builder.summary.page import BlobHead, Document, ImageDocuments, TagDocuments

V2_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

_HTTP_DATE = "%a, %d %b %Y %H:%M:%S GMT"
_UNITS = {"B": 1, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4}


def _platform(text: str) -> dict:
    """`windows version 10.0.17763.805; amd64` → the list entry's platform object."""
    os_part, arch_part = text.split("; ")
    platform: dict = {}
    os_name, _, os_version = os_part.partition(" version ")
    architecture, _, variant = arch_part.partition(" variant ")
    platform["architecture"] = architecture
    platform["os"] = os_name
    if os_version:
        platform["os.version"] = os_version
    if variant:
        platform["variant"] = variant
    return platform


def _rfc3339(http_date: str) -> str:
    return datetime.strptime(http_date, _HTTP_DATE).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _created_by(instruction: str, shell: list[str] | None) -> str:
    """What the classic builder stored for an instruction the page prints."""
    word, _, rest = instruction.partition(" ")
    prefix = " ".join(shell) + " " if shell else "/bin/sh -c "
    if word == "RUN":
        if rest.startswith(("Apply image ", "Install update ")):
            return rest  # Windows base layers: no shell ran them
        return prefix + rest
    if word in ("ADD", "COPY"):
        return f"{prefix}#(nop) {instruction}"
    return f"{prefix}#(nop)  {instruction}"


def _size(text: str) -> int:
    exact = re.search(r"\((\d+) bytes\)$", text)
    if exact:
        return int(exact.group(1))
    value, unit = text.split(" ")
    return int(float(value) * _UNITS[unit])


def _section(lines: list[str]) -> dict:
    """One `### ... - platform` section → its manifest, config and layer heads."""
    fields: dict = {}
    history: list[dict] = []
    layers: list[dict] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ docker pull "):
            fields["digest"] = line.split("@", 1)[1]
        elif line.startswith("-\tDocker Version: "):
            fields["docker_version"] = line.split(": ", 1)[1]
        elif line.startswith("-\tImage ID: "):
            fields["image_id"] = line.split("`")[1]
        elif line.startswith("-\tEntrypoint: "):
            fields["Entrypoint"] = json.loads(line.split(": ", 1)[1][1:-1])
        elif line.startswith("-\tDefault Command: "):
            fields["Cmd"] = json.loads(line.split(": ", 1)[1][1:-1])
        elif line.startswith("-\t`SHELL`: "):
            fields["Shell"] = json.loads(line.split(": ", 1)[1][1:-1])
        elif line == "```dockerfile":
            i += 1
            while lines[i] != "```":
                history.append({"date": lines[i][2:], "text": lines[i + 1]})
                i += 2
        elif line.startswith("\t-\t`"):
            layers.append({"digest": line.split("`")[1]})
        elif line.startswith("\t\tLast Modified: "):
            layers[-1]["last_modified"] = line.split(": ", 1)[1].rstrip()
        elif line.startswith("\t\tSize: "):
            layers[-1]["size"] = _size(line.split(": ", 1)[1].rstrip())
        elif line.startswith("\t\tMIME: "):
            layers[-1]["mediaType"] = line.split(": ", 1)[1]
        i += 1
    fields["history"] = history
    fields["layers"] = layers
    return fields


def _image(fields: dict, platform: dict) -> ImageDocuments:
    shell = fields.get("Shell")
    container = {key: fields[key] for key in ("Entrypoint", "Cmd", "Shell") if key in fields}
    config = {
        "architecture": platform["architecture"],
        "os": platform["os"],
        "config": container,
        "docker_version": fields["docker_version"],
        "history": [{"created": _rfc3339(h["date"]), "created_by": _created_by(h["text"], shell)}
                    for h in fields["history"]],
    }
    layers = []
    heads = {}
    for layer in fields["layers"]:
        descriptor = {"mediaType": layer["mediaType"], "size": layer["size"], "digest": layer["digest"]}
        if layer["mediaType"] == FOREIGN:
            descriptor["urls"] = [f"https://go.microsoft.com/fwlink/?linkid={layer['digest'][7:15]}"]
        layers.append(descriptor)
        heads[layer["digest"]] = BlobHead(last_modified=layer.get("last_modified"))
    manifest = {
        "schemaVersion": 2,
        "mediaType": V2,
        "config": {"mediaType": CONFIG, "size": len(json.dumps(config)), "digest": fields["image_id"]},
        "layers": layers,
    }
    return ImageDocuments(manifest=Document(V2, fields["digest"], manifest), config=config,
                          heads=heads, platform=platform)


def seed_documents(page: str) -> TagDocuments:
    """The documents a registry served for the seed's manifest list."""
    lines = page.split("\n")
    name = lines[0].split("`")[1]
    repository = name.rsplit(":", 1)[0]
    top_digest = lines[3].split("@", 1)[1]
    starts = [i for i, line in enumerate(lines) if line.startswith("### ")]
    platform_lines = [line[3:] for line in lines[:starts[0]] if line.startswith("\t-\t")]
    images = []
    for start, end, text in zip(starts, starts[1:] + [len(lines)], platform_lines):
        assert lines[start].endswith(" - " + text)
        images.append(_image(_section(lines[start:end]), _platform(text)))
    top = {
        "schemaVersion": 2,
        "mediaType": V2_LIST,
        "manifests": [{"mediaType": V2, "size": len(json.dumps(image.manifest.json)),
                       "digest": image.manifest.digest, "platform": image.platform}
                      for image in images],
    }
    return TagDocuments(name=name, repository=repository, top=Document(V2_LIST, top_digest, top),
                        images=tuple(images))
