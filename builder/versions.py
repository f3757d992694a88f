"""Stage 1a: versions.yaml → the image family (Version, Variant), validated.

The dataclasses are the contract every other stage codes against (fields may be
added, not renamed); ``load`` below reads and validates the file into them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import InputError
from .platforms import Platform, platform


@dataclass(frozen=True)
class Pip:
    version: str  # "19.3"
    url: str  # the pinned get-pip.py URL
    sha256: str  # of that get-pip.py


@dataclass(frozen=True)
class Variant:
    name: str  # "buster", "slim-buster", "alpine3.10", "windowsservercore-1809"
    directory: str  # under the series directory: "buster/slim", "windows/windowsservercore-1809"
    template: str  # template name: "debian", "slim", "alpine", "windowsservercore"
    base_image: str  # the FROM reference: "buildpack-deps:buster"
    platforms: tuple[Platform, ...]  # Windows platforms carry the variant's os.version
    os_version: str | None = None  # Windows: "10.0.17763"

    @property
    def is_windows(self) -> bool:
        return self.os_version is not None


@dataclass(frozen=True)
class Version:
    full: str  # "3.8.0", "3.9.0a1"
    aliases: tuple[str, ...]  # extra version aliases for tags: ("3", "latest")
    variants: tuple[Variant, ...]
    gpg_key: str | None = None
    pip: Pip | None = None

    @property
    def series(self) -> str:
        """The directory and the major.minor tag: "3.8"."""
        major, minor = self.full.split(".")[:2]
        return f"{major}.{minor}"

    @property
    def release(self) -> str:
        """The full version without a pre-release suffix: "3.9.0" for "3.9.0a1"."""
        return re.match(r"\d+(\.\d+)*", self.full).group(0)

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.release.split("."))

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InputError(f"{self.full} has no variant {name!r}; it has: "
                         f"{', '.join(v.name for v in self.variants)}", field="variant")


@dataclass(frozen=True)
class Family:
    repository: str  # "python"
    versions: tuple[Version, ...]  # newest series first
    source: Path  # the versions file it was read from
    templates: Path  # the templates directory
    default_debian_suite: str | None = None  # "buster": gets -slim and the bare shared tags
    default_alpine: str | None = None  # "alpine3.10": gets the -alpine short tags
    extra: dict = field(default_factory=dict, compare=False)

    def version(self, wanted: str) -> Version:
        """A version by full version ("3.8.0") or series ("3.8")."""
        for v in self.versions:
            if wanted in (v.full, v.series):
                return v
        raise InputError(f"unknown version {wanted!r}; {self.source.name} has: "
                         f"{', '.join(v.full for v in self.versions)}", field="version")


# Values that end up inside RUN lines and ENV values are held to patterns with
# no shell (or PowerShell) metacharacters, so no quoting in a template can be
# escaped by a hostile or mistyped versions.yaml.
_PATTERNS = {
    "version": (r"\d+\.\d+\.\d+((a|b|rc)\d+)?", "a release number such as 3.8.0 or 3.9.0a1"),
    "alias": (r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a tag such as 3 or latest"),
    "name": (r"[a-z0-9][a-z0-9.-]*", "lower-case letters, digits, dots and dashes"),
    "directory": (r"[a-z0-9][a-z0-9.-]*(/[a-z0-9][a-z0-9.-]*)*",
                  "a relative path such as buster/slim"),
    "image": (r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[0-9a-f]{64})?",
              "an image reference such as debian:buster-slim"),
    "template": (r"[a-z0-9][a-z0-9_-]*", "a template name such as debian"),
    "gpg-key": (r"[0-9A-F]{40}", "a GPG fingerprint: 40 upper-case hex digits"),
    "pip-version": (r"\d+(\.\d+)*", "a pip release such as 19.3"),
    "url": (r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~+-]+)*/?", "an https URL of letters, digits and ._~+-"),
    "sha256": (r"[0-9a-f]{64}", "64 lower-case hex digits"),
    "os-version": (r"10\.0\.\d+", "a Windows os.version such as 10.0.17763"),
}

_TOP_KEYS = {"repository": True, "defaults": False, "variants": True, "versions": True,
             "maintainers": False, "git-repo": False}
_DEFAULTS_KEYS = {"debian-suite": False, "alpine": False}
_VARIANT_KEYS = {"template": True, "directory": False, "from": True, "platforms": True,
                 "os-version": False}
_VERSION_KEYS = {"version": True, "aliases": False, "gpg-key": False, "pip": False,
                 "variants": True}
_PIP_KEYS = {"version": True, "url": True, "sha256": True}

TEMPLATE_SUFFIX = ".Dockerfile.j2"


class _Doc:
    """A YAML document as plain values, remembering the line of every node."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple, int] = {}

    def error(self, where: tuple, message: str) -> InputError:
        return InputError(message, source=self.source, line=self.line(where),
                          field=_field_name(where) or None)

    def line(self, where: tuple) -> int | None:
        while where not in self.lines and where:
            where = where[:-1]
        return self.lines.get(where)

    def value(self, node, where: tuple = ()):
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InputError("keys must be plain words", source=self.source,
                                     line=key_node.start_mark.line + 1, field=_field_name(where))
                key = key_node.value
                if key in result:
                    raise InputError(f"duplicate key {key!r}", source=self.source,
                                     line=key_node.start_mark.line + 1,
                                     field=_field_name(where + (key,)))
                result[key] = self.value(value_node, where + (key,))
                # A field is reported where its key is, the line an editor should jump to.
                self.lines[where + (key,)] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, where + (i,)) for i, item in enumerate(node.value)]
        # Scalars stay the text that was written: 3.10 is not 3.1 and 19.3 not a float.
        if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
            return None
        return node.value


def _field_name(where: tuple) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _mapping(doc: _Doc, value, where: tuple, keys: dict[str, bool]) -> dict:
    if not isinstance(value, dict):
        raise doc.error(where, "expected a mapping of key: value")
    for key in value:
        if key not in keys:
            raise doc.error(where + (key,), f"unknown key {key!r}; known: {', '.join(keys)}")
    for key, required in keys.items():
        if required and value.get(key) is None:
            raise doc.error(where, f"missing field {key!r}")
    return value


def _text(doc: _Doc, value, where: tuple, pattern: str) -> str:
    if not isinstance(value, str):
        raise doc.error(where, "expected a single value, not a list or mapping")
    regex, meaning = _PATTERNS[pattern]
    if not re.fullmatch(regex, value):
        raise doc.error(where, f"{value!r} is not {meaning}")
    return value


def _list(doc: _Doc, value, where: tuple) -> list:
    if not isinstance(value, list):
        raise doc.error(where, "expected a list, such as [a, b]")
    if not value:
        raise doc.error(where, "must not be empty")
    return value


def load(path: str | Path, templates_dir: str | Path | None = None) -> Family:
    """Read and validate a versions file; every problem is an InputError naming its line.

    `templates_dir` defaults to `templates/` next to the versions file.
    """
    path = Path(path)
    templates = Path(templates_dir) if templates_dir is not None else path.parent / "templates"
    doc = _Doc(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read it: {error.strerror}", source=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(f"YAML syntax error: {problem}", source=path,
                         line=mark.line + 1 if mark else None) from None
    if root is None:
        raise InputError("the file is empty", source=path)
    top = _mapping(doc, doc.value(root), (), _TOP_KEYS)
    repository = _text(doc, top["repository"], ("repository",), "name")

    catalogue = top["variants"]
    if not isinstance(catalogue, dict) or not catalogue:
        raise doc.error(("variants",), "expected a mapping of variant name: settings")
    variants = {name: _variant(doc, name, settings, templates)
                for name, settings in catalogue.items()}

    defaults = _mapping(doc, top.get("defaults") or {}, ("defaults",), _DEFAULTS_KEYS)
    for key in defaults:
        name = _text(doc, defaults[key], ("defaults", key), "name")
        if name not in variants or variants[name].is_windows:
            raise doc.error(("defaults", key), f"{name!r} is not a Linux variant of the catalogue "
                            f"(variants: {', '.join(variants)})")

    versions = tuple(_version(doc, i, v, variants)
                     for i, v in enumerate(_list(doc, top["versions"], ("versions",))))
    _check_unique_tags(doc, versions)
    extra = {}
    if top.get("maintainers") is not None:
        extra["maintainers"] = tuple(_plain(doc, m, ("maintainers", i))
                                     for i, m in enumerate(_list(doc, top["maintainers"], ("maintainers",))))
    if top.get("git-repo") is not None:
        extra["git-repo"] = _text(doc, top["git-repo"], ("git-repo",), "url")
    return Family(repository=repository, versions=versions, source=path, templates=templates,
                  default_debian_suite=defaults.get("debian-suite"),
                  default_alpine=defaults.get("alpine"), extra=extra)


def _plain(doc: _Doc, value, where: tuple) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise doc.error(where, "expected one line of text")
    return value


def _variant(doc: _Doc, name: str, settings, templates: Path) -> Variant:
    where = ("variants", name)
    _text(doc, name, where, "name")
    settings = _mapping(doc, settings, where, _VARIANT_KEYS)
    template = _text(doc, settings["template"], where + ("template",), "template")
    if not (templates / (template + TEMPLATE_SUFFIX)).is_file():
        raise doc.error(where + ("template",), f"no template {template + TEMPLATE_SUFFIX} in "
                        f"{templates}/; add it or fix the name")
    directory = _text(doc, settings.get("directory", name), where + ("directory",), "directory")
    base_image = _text(doc, settings["from"], where + ("from",), "image")
    os_version = settings.get("os-version")
    if os_version is not None:
        os_version = _text(doc, os_version, where + ("os-version",), "os-version")
    platforms = []
    for i, entry in enumerate(_list(doc, settings["platforms"], where + ("platforms",))):
        at = where + ("platforms", i)
        if not isinstance(entry, str):
            raise doc.error(at, "expected a platform name such as amd64")
        try:
            found = platform(entry)
        except InputError as error:
            raise doc.error(at, error.message) from None
        if (found.os == "windows") != (os_version is not None):
            raise doc.error(at, f"{entry}: Windows platforms need the variant's os-version, "
                            "and only Windows platforms may have one")
        if found.os == "windows":
            found = found.with_os_version(os_version)
        if found in platforms:
            raise doc.error(at, f"{entry} is listed twice")
        platforms.append(found)
    return Variant(name=name, directory=directory, template=template, base_image=base_image,
                   platforms=tuple(platforms), os_version=os_version)


def _version(doc: _Doc, index: int, entry, catalogue: dict[str, Variant]) -> Version:
    where = ("versions", index)
    entry = _mapping(doc, entry, where, _VERSION_KEYS)
    full = _text(doc, entry["version"], where + ("version",), "version")
    aliases = tuple(_text(doc, a, where + ("aliases", i), "alias")
                    for i, a in enumerate(_list(doc, entry["aliases"], where + ("aliases",))
                                          if entry.get("aliases") is not None else ()))
    gpg_key = entry.get("gpg-key")
    if gpg_key is not None:
        gpg_key = _text(doc, gpg_key, where + ("gpg-key",), "gpg-key")
    pip = None
    if entry.get("pip") is not None:
        at = where + ("pip",)
        fields = _mapping(doc, entry["pip"], at, _PIP_KEYS)
        pip = Pip(version=_text(doc, fields["version"], at + ("version",), "pip-version"),
                  url=_text(doc, fields["url"], at + ("url",), "url"),
                  sha256=_text(doc, fields["sha256"], at + ("sha256",), "sha256"))
    variants = []
    for i, name in enumerate(_list(doc, entry["variants"], where + ("variants",))):
        at = where + ("variants", i)
        if not isinstance(name, str) or name not in catalogue:
            raise doc.error(at, f"unknown variant {name!r}; the catalogue under variants: has "
                            f"{', '.join(catalogue)}")
        if catalogue[name] in variants:
            raise doc.error(at, f"{name} is listed twice")
        variants.append(catalogue[name])
    directories = [v.directory for v in variants]
    for i, variant in enumerate(variants):
        if directories.count(variant.directory) > 1:
            raise doc.error(where + ("variants", i),
                            f"two variants share the directory {variant.directory}")
    return Version(full=full, aliases=aliases, variants=tuple(variants), gpg_key=gpg_key, pip=pip)


def _check_unique_tags(doc: _Doc, versions: tuple[Version, ...]) -> None:
    """Two versions answering to the same tag would overwrite each other's images."""
    seen: dict[str, str] = {}
    for index, version in enumerate(versions):
        names = [(version.full, ("version",)), (version.series, ("version",))]
        names += [(a, ("aliases", i)) for i, a in enumerate(version.aliases)]
        for name, at in names:
            owner = seen.setdefault(name, version.full)
            if owner != version.full:
                raise doc.error(("versions", index) + at,
                                f"{name!r} already names version {owner}; each tag may name one version")
