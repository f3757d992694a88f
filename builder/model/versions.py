"""Stage 1a: versions.yaml → the image family (Version, Variant), validated.

The dataclasses are the contract every other stage codes against (fields may be
added, not renamed); ``load`` below reads and validates the file into them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from builder.model import smoke
from builder.model import yamldoc
from builder.model.tags import variant_tags
from builder.model.errors import InputError
from builder.model.platforms import Platform, platform


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
    free_threaded: bool = False  # built with --disable-gil (PEP 703/779); named "<stem>-freethreaded"

    @property
    def is_windows(self) -> bool:
        return self.os_version is not None

    @property
    def stem(self) -> str:
        """The variant it is a build of, as its tags and template read it: "slim-trixie" for
        slim-trixie-freethreaded, whose tags are 3.14t-slim-trixie, 3.14t-slim, …"""
        return self.name.removesuffix(FREE_THREADED_SUFFIX) if self.free_threaded else self.name


@dataclass(frozen=True)
class Version:
    full: str  # "3.8.0", "3.9.0a1"
    aliases: tuple[str, ...]  # extra version aliases for tags: ("3", "latest")
    variants: tuple[Variant, ...]
    gpg_key: str | None = None  # the release manager's fingerprint; None: the series is not PGP-signed
    pip: Pip | None = None  # get-pip.py, for series before pip came from ensurepip
    sha256: str | None = None  # of Python-<full>.tar.xz, as upstream publishes it
    windows_sha256: str | None = None  # of python-<full>-amd64.exe, for the Windows variants
    keyserver: str | None = None  # where `gpg --recv-keys` fetches gpg_key: hkps://keys.openpgp.org
    debian_suite: str | None = None  # overrides Family.default_debian_suite for this version: "trixie"
    alpine: str | None = None  # overrides Family.default_alpine for this version: "alpine3.24"

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
    checks: tuple[smoke.Check, ...] = ()  # the smoke tests of templates/smoke.yaml

    def debian_suite(self, version: Version) -> str | None:
        """The variant that gets the version's -slim and bare shared tags."""
        return version.debian_suite or self.default_debian_suite

    def alpine(self, version: Version) -> str | None:
        """The variant that gets the version's -alpine tags."""
        return version.alpine or self.default_alpine

    def version(self, wanted: str) -> Version:
        """A version by full version ("3.8.0") or series ("3.8")."""
        for v in self.versions:
            if wanted in (v.full, v.series):
                return v
        raise InputError(f"unknown version {wanted!r}; {self.source.name} has: "
                         f"{', '.join(v.full for v in self.versions)}", field="version")


FREE_THREADED_SUFFIX = "-freethreaded"

RELEASE_NUMBER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?")
_STAGES = {"a": 0, "b": 1, "rc": 2, None: 3}  # a final release sorts after its pre-releases
FINAL = _STAGES[None]


def release_key(version: str) -> tuple[int, ...]:
    """Sort key of a release number: 3.13.5 < 3.14.0a1 < 3.14.0rc2 < 3.14.0 < 3.14.1."""
    match = RELEASE_NUMBER.fullmatch(version)
    if match is None:
        raise ValueError(f"{version!r} is not a release number")
    major, minor, micro, stage, number = match.groups()
    return int(major), int(minor), int(micro), _STAGES[stage], int(number or 0)


def image_version(config: Mapping, repository: str) -> str | None:
    """The version an image of `repository` was built for: its `<REPOSITORY>_VERSION`
    environment variable (PYTHON_VERSION=3.14.6, HELLO_VERSION=1.0.0), which the family's
    templates set, as upstream's do; None without one that is a release number. The
    environment rather than a label of our own: the classic builder makes each label passed to
    a build a step of its own, and upstream's images are read the same way."""
    name = re.sub(r"[^A-Z0-9]", "_", repository.rsplit("/", 1)[-1].upper()) + "_VERSION="
    for entry in (config.get("config") or {}).get("Env") or ():
        if isinstance(entry, str) and entry.startswith(name):
            value = entry[len(name):]
            return value if RELEASE_NUMBER.fullmatch(value) else None
    return None


# Values that end up inside RUN lines and ENV values are held to patterns with
# no shell (or PowerShell) metacharacters, so no quoting in a template can be
# escaped by a hostile or mistyped versions.yaml.
_VERSION = (r"\d+\.\d+\.\d+((a|b|rc)\d+)?", "a release number such as 3.8.0 or 3.9.0a1")
_ALIAS = (r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a tag such as 3 or latest")
_NAME = (r"[a-z0-9][a-z0-9.-]*", "lower-case letters, digits, dots and dashes")
_DIRECTORY = (r"[a-z0-9][a-z0-9.-]*(/[a-z0-9][a-z0-9.-]*)*",
              "a relative path such as buster/slim")
# Docker's reference grammar (distribution/reference): a first component is a registry
# host only if it has a dot or a port or is localhost, as the engine decides.
_HOST_PART = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = (rf"(localhost|{_HOST_PART}(\.{_HOST_PART})+|{_HOST_PART}(\.{_HOST_PART})*:\d+"
         r"|\[[0-9A-Fa-f:]+\](:\d+)?)")
_PATH_PART = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_IMAGE = (rf"({_HOST}/)?{_PATH_PART}(/{_PATH_PART})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
          r"(@sha256:[0-9a-f]{64})?",
          "an image reference such as debian:trixie-slim or registry.internal:5000/debian:trixie-slim")
_TEMPLATE = (r"[a-z0-9][a-z0-9_-]*", "a template name such as debian")
_GPG_KEY = (r"[0-9A-F]{40}", "a GPG fingerprint: 40 upper-case hex digits")
_PIP_VERSION = (r"\d+(\.\d+)*", "a pip release such as 19.3")
_URL = (r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~+-]+)*/?",
        "an https URL of letters, digits and ._~+-")
_SHA256 = (r"[0-9a-f]{64}", "64 lower-case hex digits")
_OS_VERSION = (r"10\.0\.\d+", "a Windows os.version such as 10.0.17763")
_KEYSERVER = (r"(hkps?://)?[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?",
              "a keyserver such as hkps://keys.openpgp.org")

_TOP_KEYS = {"repository": True, "defaults": False, "variants": True, "versions": True,
             "maintainers": False, "git-repo": False, "image-url": False}
_DEFAULTS_KEYS = {"debian-suite": False, "alpine": False, "keyserver": False}
_VARIANT_KEYS = {"template": True, "directory": False, "from": True, "platforms": True,
                 "os-version": False, "free-threaded": False}
_VERSION_KEYS = {"version": True, "aliases": False, "gpg-key": False, "pip": False,
                 "sha256": False, "windows-sha256": False, "keyserver": False,
                 "debian-suite": False, "alpine": False, "variants": True}
_PIP_KEYS = {"version": True, "url": True, "sha256": True}

TEMPLATE_SUFFIX = ".Dockerfile.j2"


def load(path: str | Path, templates_dir: str | Path | None = None) -> Family:
    """Read and validate a versions file; every problem is an InputError naming its line.

    `templates_dir` defaults to `templates/` next to the versions file.
    """
    path = Path(path)
    templates = Path(templates_dir) if templates_dir is not None else path.parent / "templates"
    doc = yamldoc.load(path)
    if doc.root is None:
        raise InputError("the file is empty", source=path, line=1)
    top = doc.mapping(doc.root, (), _TOP_KEYS)
    repository = doc.text(top["repository"], ("repository",), _NAME)

    catalogue = top["variants"]
    if not isinstance(catalogue, dict) or not catalogue:
        raise doc.error(("variants",), "expected a mapping of variant name: settings")
    variants = {name: _variant(doc, name, settings, templates)
                for name, settings in catalogue.items()}

    defaults = dict(doc.mapping(top.get("defaults") or {}, ("defaults",), _DEFAULTS_KEYS))
    keyserver = defaults.pop("keyserver", None)
    if keyserver is not None:
        keyserver = doc.text(keyserver, ("defaults", "keyserver"), _KEYSERVER)
    for key in defaults:
        _linux_variant(doc, defaults[key], ("defaults", key), variants.values(), "the catalogue")

    versions = tuple(_version(doc, i, v, variants, keyserver)
                     for i, v in enumerate(doc.sequence(top["versions"], ("versions",))))
    _check_unique_names(doc, versions)
    extra = {}
    if top.get("maintainers") is not None:
        maintainers = doc.sequence(top["maintainers"], ("maintainers",))
        extra["maintainers"] = tuple(doc.text(m, ("maintainers", i))
                                     for i, m in enumerate(maintainers))
    for key in ("git-repo", "image-url"):  # the library file's header; the indexes' annotations
        if top.get(key) is not None:
            extra[key] = doc.text(top[key], (key,), _URL)
    family = Family(repository=repository, versions=versions, source=path, templates=templates,
                    default_debian_suite=defaults.get("debian-suite"),
                    default_alpine=defaults.get("alpine"), extra=extra,
                    checks=smoke.load(templates))
    _check_tags(doc, family)
    return family


def _linux_variant(doc: yamldoc.Doc, value, where: tuple, variants, scope: str) -> str:
    """A debian-suite or alpine setting: the name of one of `variants`, not a Windows one."""
    name = doc.text(value, where, _NAME)
    if not any(v.name == name and not v.is_windows for v in variants):
        raise doc.error(where, f"{name!r} is not a Linux variant of {scope} "
                        f"({', '.join(v.name for v in variants if not v.is_windows)})")
    return name


def _variant(doc: yamldoc.Doc, name: str, settings, templates: Path) -> Variant:
    where = ("variants", name)
    doc.text(name, where, _NAME)
    settings = doc.mapping(settings, where, _VARIANT_KEYS)
    template = doc.text(settings["template"], where + ("template",), _TEMPLATE)
    if not (templates / (template + TEMPLATE_SUFFIX)).is_file():
        raise doc.error(where + ("template",), f"no template {template + TEMPLATE_SUFFIX} in "
                        f"{templates}/; add it or fix the name")
    directory = doc.text(settings.get("directory", name), where + ("directory",), _DIRECTORY)
    base_image = doc.text(settings["from"], where + ("from",), _IMAGE)
    os_version = settings.get("os-version")
    if os_version is not None:
        os_version = doc.text(os_version, where + ("os-version",), _OS_VERSION)
    free_threaded = _free_threaded(doc, name, settings.get("free-threaded", False), where,
                                   os_version)
    platforms = []
    for i, entry in enumerate(doc.sequence(settings["platforms"], where + ("platforms",))):
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
                   platforms=tuple(platforms), os_version=os_version, free_threaded=free_threaded)


def _free_threaded(doc: yamldoc.Doc, name: str, value, where: tuple, os_version) -> bool:
    """A variant's free-threaded setting: true only on a Linux variant named <stem>-freethreaded,
    so that its name says what its tags (<version>t-<stem>) do."""
    at = where + ("free-threaded",)
    # Scalars stay as written (yamldoc), so true is the text "true".
    value = doc.text(value, at, (r"true|false", "true or false")) == "true" \
        if value is not False else False
    if value and os_version is not None:
        raise doc.error(at, "the Windows installer has no free-threaded build to choose here")
    if value and not name.endswith(FREE_THREADED_SUFFIX):
        raise doc.error(at, f"a free-threaded variant is named after the one it builds, plus "
                        f"{FREE_THREADED_SUFFIX}: {name}{FREE_THREADED_SUFFIX}, not {name}")
    return value


def _version(doc: yamldoc.Doc, index: int, entry, catalogue: dict[str, Variant],
             default_keyserver: str | None) -> Version:
    where = ("versions", index)
    entry = doc.mapping(entry, where, _VERSION_KEYS)
    full = doc.text(entry["version"], where + ("version",), _VERSION)
    aliases = tuple(doc.text(a, where + ("aliases", i), _ALIAS)
                    for i, a in enumerate(doc.sequence(entry["aliases"], where + ("aliases",))
                                          if entry.get("aliases") is not None else ()))
    gpg_key = entry.get("gpg-key")
    if gpg_key is not None:
        gpg_key = doc.text(gpg_key, where + ("gpg-key",), _GPG_KEY)
    sha256, windows_sha256, keyserver = (
        doc.text(entry[key], where + (key,), pattern) if entry.get(key) is not None else None
        for key, pattern in (("sha256", _SHA256), ("windows-sha256", _SHA256),
                             ("keyserver", _KEYSERVER)))
    pip = None
    if entry.get("pip") is not None:
        at = where + ("pip",)
        fields = doc.mapping(entry["pip"], at, _PIP_KEYS)
        pip = Pip(version=doc.text(fields["version"], at + ("version",), _PIP_VERSION),
                  url=doc.text(fields["url"], at + ("url",), _URL),
                  sha256=doc.text(fields["sha256"], at + ("sha256",), _SHA256))
    variants = []
    for i, name in enumerate(doc.sequence(entry["variants"], where + ("variants",))):
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
    # A version's own default suite must be one it ships; the family default need not be.
    debian_suite, alpine = (
        _linux_variant(doc, entry[key], where + (key,), variants, "this version")
        if entry.get(key) is not None else None for key in ("debian-suite", "alpine"))
    return Version(full=full, aliases=aliases, variants=tuple(variants), gpg_key=gpg_key, pip=pip,
                   sha256=sha256, windows_sha256=windows_sha256,
                   keyserver=keyserver or default_keyserver,
                   debian_suite=debian_suite, alpine=alpine)


def _check_unique_names(doc: yamldoc.Doc, versions: tuple[Version, ...]) -> None:
    """Two versions answering to the same tag would overwrite each other's images."""
    seen: dict[str, str] = {}
    for index, version in enumerate(versions):
        names = [(version.full, ("version",)), (version.series, ("version",))]
        names += [(a, ("aliases", i)) for i, a in enumerate(version.aliases)]
        for name, at in names:
            owner = seen.setdefault(name, version.full)
            if owner != version.full:
                raise doc.error(("versions", index) + at, f"{name!r} already names version "
                                f"{owner}; each tag may name one version")


def _check_tags(doc: yamldoc.Doc, family: Family) -> None:
    """Every tag the family will publish is a valid tag and names one thing.

    A tag (Tags:) belongs to one variant of one version; a shared tag (SharedTags:)
    may group several variants, all of one version, and is nobody's plain tag.
    Caught here, a collision would otherwise surface only at publish, as one
    manifest list overwriting another.
    """

    owners: dict[str, tuple[Version, Variant, bool]] = {}
    for index, version in enumerate(family.versions):
        for position, variant in enumerate(version.variants):
            at = ("versions", index, "variants", position)
            computed = variant_tags(family, version, variant)
            for tag, shared in [(t, False) for t in computed.tags] + \
                               [(t, True) for t in computed.shared_tags]:
                if len(tag) > 128:
                    raise doc.error(at, f"tag {tag!r} of {version.full} {variant.name} has "
                                    f"{len(tag)} characters; a tag may have at most 128: "
                                    "shorten the alias or the variant name")
                if not re.fullmatch(_ALIAS[0], tag):
                    raise doc.error(at, f"tag {tag!r} of {version.full} {variant.name} is not a "
                                    "valid tag: letters, digits and _.- only, not starting "
                                    "with . or -")
                owner = owners.setdefault(tag, (version, variant, shared))
                if owner == (version, variant, shared) or (
                        shared and owner[2] and owner[0] == version):
                    continue
                raise doc.error(at, f"tag {tag!r} of {version.full} {variant.name} is also a tag "
                                f"of {owner[0].full} {owner[1].name}; each tag may name one "
                                "image: rename a variant, or change an alias or a debian-suite/"
                                "alpine default")
