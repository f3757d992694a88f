"""Image references and registry documents as values: names, manifests, media types, digests.

Pure: parsing ``python`` into ``docker.io/library/python:latest``, the media types of
Docker v2 and OCI documents, and the digest of some bytes. The HTTP client that fetches
and writes these documents is `builder.registry.client`.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass

from builder.model.errors import InputError

DOCKER_HUB = "docker.io"  # the one name Docker Hub goes by here, whichever alias was written
DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LIST_TYPES = (DOCKER_LIST, OCI_INDEX)
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
# List types always go in Accept: without them a list tag answers with its amd64 child, or a
# schema1 rendering, and an OCI index with 404 (docs/classic-builder.md, "The registry").
ACCEPT_ALL = (DOCKER_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST)
FOREIGN_LAYER_TYPES = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                       "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                       "application/vnd.oci.image.layer.nondistributable.v1.tar")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_DOMAIN_RE = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                        r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])"
                        r"(?::[0-9]+)?")


DOMAIN_PATTERN = _DOMAIN_RE.pattern  # host[:port] as references name registries
HOST_MEANING = "a registry host such as 127.0.0.1:5000 or registry.example.com (no scheme, no path)"
REGISTRY_MEANING = ("a registry host[:port][/path] such as 127.0.0.1:5000 or "
                    "registry.example.com/team (no scheme; the path in lowercase)")


def registry_problem(value: str, *, path: bool) -> str | None:
    """What keeps `value` from being a registry host (`path`: with an optional /path after
    it), or None. Checked where the value is read: it goes into FROM lines and references,
    so a newline or a '#' in it would reach a Dockerfile as an instruction of its own."""
    host, _, rest = value.partition("/")
    if not host.isascii() or not _DOMAIN_RE.fullmatch(host):
        return f"{value!r} is not {REGISTRY_MEANING if path else HOST_MEANING}"
    if rest and (not path or not _REPOSITORY_RE.fullmatch(rest)):
        return f"{value!r} is not {REGISTRY_MEANING if path else HOST_MEANING}"
    return None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageRef:
    """A normalized image reference, by Docker's rules: ``python`` is
    ``docker.io/library/python:latest``; a first component with a dot, a colon or ``localhost``
    is a registry host. With neither tag nor digest the tag is ``latest``."""

    registry: str  # "docker.io" for Docker Hub, else host[:port]
    repository: str  # "library/python"
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        def bad(why: str) -> InputError:
            return InputError(f"{text!r} is not an image reference: {why}", field="image")

        rest, _, digest = text.strip().partition("@")
        if digest and not _DIGEST_RE.fullmatch(digest):
            raise bad(f"bad digest {digest!r} (want sha256:<64 hex>)")
        tag = None
        slash = rest.rfind("/")
        if ":" in rest[slash + 1:]:
            rest, _, tag = rest.rpartition(":")
            if not _TAG_RE.fullmatch(tag):
                raise bad(f"bad tag {tag!r}")
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"
                          or first != first.lower()):
            if not _DOMAIN_RE.fullmatch(first):
                raise bad(f"bad registry host {first!r}")
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, rest
        if registry in DOCKER_HUB_HOSTS:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = "library/" + repository
        if not _REPOSITORY_RE.fullmatch(repository):
            raise bad("the repository name must be lowercase letters, digits and separators")
        if tag is None and not digest:
            tag = "latest"
        return cls(registry, repository, tag, digest or None)

    @property
    def familiar_repository(self) -> str:
        """The name as people write it: ``python`` for docker.io/library/python."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return (self.familiar_repository + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str  # sha256 of body
    body: bytes  # the exact bytes: descriptors and digests are computed from these

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def is_list(self) -> bool:
        return self.media_type in LIST_TYPES

    @property
    def layers_size(self) -> int:
        """An image's compressed size: its layers' sizes as the manifest gives them (the
        summary page's Total Size)."""
        return sum(layer.get("size") or 0 for layer in self.json.get("layers") or [])


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int | None
    last_modified: str | None  # the raw Last-Modified header; Distribution 2.8 sends none
    media_type: str | None = None  # the Content-Type header


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# Content-Types that say nothing of which manifest a body is: its own mediaType does.
_GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")


def manifest_kind(declared: str, body: bytes) -> tuple[str, str | None]:
    """(media type, problem) of a manifest body served with Content-Type `declared`: the
    body's own mediaType, else the declared one; the problem says what about the body makes
    it unusable as that kind of document (None: nothing). Checked before any use, so that a
    body of the wrong kind or shape is an error naming it, never a KeyError later."""
    try:
        document = json.loads(body)
    except ValueError:
        return declared, _not_json(body, "a manifest")
    if not isinstance(document, dict):
        return declared, f"the manifest is a JSON {_json_kind(document)}, not an object"
    own = document.get("mediaType")
    if own is not None and not isinstance(own, str):
        return declared, "the manifest's mediaType is not a string"
    if own and declared not in _GENERIC_TYPES and own != declared:
        return own, f"it is served as {declared} but its body says {own}"
    media_type = own or declared
    if media_type in LIST_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list) or not all(
                _descriptor(e) and isinstance(e.get("platform") or {}, dict) for e in entries):
            return media_type, "a list whose manifests are not a list of descriptors"
    elif media_type in IMAGE_TYPES:
        layers = document.get("layers") or []
        if not _descriptor(document.get("config")):
            return media_type, "an image manifest without a config descriptor"
        if not isinstance(layers, list) or not all(_descriptor(layer) for layer in layers):
            return media_type, "an image manifest whose layers are not a list of descriptors"
    return media_type, None


def config_problem(body: bytes) -> tuple[dict, str | None]:
    """(config, problem) of an image config blob: an object whose config, Labels and history
    have the kinds the pages and the build hash check read."""
    try:
        config = json.loads(body)
    except ValueError:
        return {}, _not_json(body, "an image config")
    if not isinstance(config, dict):
        return {}, f"the image config is a JSON {_json_kind(config)}, not an object"
    inner = config.get("config")
    if inner is not None and not isinstance(inner, dict):
        return {}, f"the image config's config is a JSON {_json_kind(inner)}, not an object"
    if inner and inner.get("Labels") is not None and not isinstance(inner["Labels"], dict):
        return {}, "the image config's Labels are not an object"
    for name, kind in (("history", list), ("rootfs", dict), ("os.features", list)):
        if config.get(name) is not None and not isinstance(config[name], kind):
            return {}, f"the image config's {name} is a JSON {_json_kind(config[name])}"
    for name in ("os", "architecture", "variant", "os.version"):
        if config.get(name) is not None and not isinstance(config[name], str):
            return {}, f"the image config's {name} is not a string"
    return config, None


def _descriptor(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("digest"), str)


def _not_json(body: bytes, expected: str) -> str:
    text = body.decode("utf-8", "replace").strip()
    first = text.splitlines()[0][:120] if text else "(empty)"
    kind = "HTML" if text[:1] == "<" else "something that is not JSON"
    return f"the registry answered {kind} where {expected} was expected (first line: {first})"


def _json_kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
