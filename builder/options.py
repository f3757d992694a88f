"""Every command-line option once: its name, the value it gives, its default and its help.

The commands' Options dataclasses take their defaults from the constants here, and the CLI
(`builder.cli`) makes each task's flags and help from the tables at the bottom, so an option is
spelled in one place. Options that share a flag but not a meaning (`--check` of generate and of
update, `--port` of the registry and of the mirror) are separate entries. Pure: no clients, no
I/O, so listing the commands loads nothing else.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from builder.model.mirrors import PYTHON_ORG
from builder.model.platforms import platform_names

DEFAULT_VERSIONS = "versions.yaml"
DEFAULT_LOGS = "logs"  # <logs>/<version>/<variant>/<platform>.log
# A release's summary pages, <out>/<repository>/remote/<tag>.md, and every run's HTML report,
# <out>/<repository>/index.html.
DEFAULT_PAGES = "out"
# Requests in flight per registry: the registry client's own default, which a test holds equal;
# spelled here so that the help needs no client loaded.
DEFAULT_CONCURRENCY = 8
DEFAULT_REGISTRY_PORT = 5000  # the local registry's loopback port
DEFAULT_MIRROR_PORT = 8600  # the mirror server's loopback port
DEFAULT_MIRROR_SOURCE = "debian"  # where the mirror's sources come from: Debian's source archive
DEFAULT_SUITES = ("trixie", "bookworm")  # the Debian bases the mirror makes
DEFAULT_BASE_PLATFORMS = ("amd64", "i386")  # native here; others run mmdebstrap under QEMU


@dataclass(frozen=True)
class Option:
    """One flag, `--<name with dashes>`, and what it gives its command's Options."""
    name: str  # the parameter: dry_run is --dry-run
    help: str
    default: Any = None  # None: a text, absent; False: a switch; an int: an integer
    repeatable: bool = False  # given once per value; the field gets a tuple
    required: bool = False
    positional: bool = False  # may be given without its flag: `summary python:latest`
    field: str | None = None  # the Options field it fills, when that is named otherwise
    convert: Callable[[Any], Any] | None = None  # the given value → the field's value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def described(self) -> str:
        """The help with the default, as the task's help shows it."""
        if self.positional:
            return f"{self.help} (required; the flag itself may be left out)"
        if self.required:
            return f"{self.help} (required)"
        shown = ", ".join(self.default) if isinstance(self.default, tuple) else self.default
        if shown is None or isinstance(shown, bool):
            return self.help
        return f"{self.help} (default {shown})"

    def needed(self) -> Option:
        """This option, required: publish and release need the --registry build can do without."""
        return replace(self, required=True)

    def value(self, given: Any) -> Any:
        """The field's value for what the command line gave (None or [] when absent)."""
        if given is None or given == []:
            given = self.default
        if given is None:
            return None
        if self.repeatable:
            given = tuple(given)
        return self.convert(given) if self.convert else given


def _one(reference: str) -> tuple[str, ...]:
    return (reference,)


# --- shared by several commands ---------------------------------------------------------------

VERSIONS = Option("versions", "the versions file", DEFAULT_VERSIONS)
TEMPLATES = Option("templates", "the templates directory (default: templates/ beside the "
                                "versions file)")
VERSION = Option("version", "the version: 3.8.0, or its series, 3.8", required=True)
VARIANT = Option("variant", "only this variant (repeatable; default: every one of the "
                            "version's): its images, and the tags it alone makes up",
                 repeatable=True, field="variants")
PLATFORM = Option("platform", "only this platform (repeatable, or a comma list): arm64v8, "
                              "linux/arm64 or arm64; its images, and lists of it and of the "
                              "other platforms already published and current",
                  repeatable=True, field="platforms", convert=platform_names)
REGISTRY = Option("registry", "where the per-arch images and the tags go: 127.0.0.1:5000, "
                              "registry.example.com/team, docker.io")
BUILDERS = Option("builders", "the builders file: the engines and the platforms they build, and "
                              "the base and source mirrors each image's build hash covers "
                              "(default $BUILDER_BUILDERS, else the local engine)")
REPORT = Option("report", "write the JSON report here: what each job, tag, page or series "
                          "came to, and the exit code")
DRY_RUN = Option("dry_run", "say what would be done (the plan, the tags, the diff); build, "
                            "push and write nothing", False)
FORCE = Option("force", "build and push even when the registry holds an image with the same "
                        "build hash", False)
NO_CACHE = Option("no_cache", "build without the engine's layer cache", False, field="nocache")
LOGS = Option("logs", "the directory of the build logs: <logs>/<version>/<variant>/<platform>.log",
              DEFAULT_LOGS)
ARCH_NAMESPACE = Option("arch_namespace", "per-arch images are <registry>/<arch>/<repository>:"
                                          "<version>-<variant> (pushed there, copied in when "
                                          "publishing) instead of arch-suffixed tags", False)
OCI = Option("oci", "write OCI image indexes instead of Docker manifest lists", False)
ALLOW_MISSING = Option("allow_missing", "publish tags whose per-arch images are not all there "
                                        "(loudly)", False)
ALLOW_LAGGING = Option("allow_lagging", "a platform this run has no image of keeps the member "
                                        "the tag lists now (named as lagging), never one older "
                                        "than the tag holds; a release publishes past failed "
                                        "jobs with it", False)
CA_BUNDLE = Option("ca_bundle", "PEM file of the CA that signed the registry's certificate")
CONCURRENCY = Option("registry_concurrency", "requests in flight per registry, shared by every "
                                             "stage of the run", DEFAULT_CONCURRENCY)

# --- one command's own ------------------------------------------------------------------------

PROBE = Option("probe", "also ask each engine of the plan what it is: its Docker version, its "
                        "image store (containerd or graphdriver) and the builder each platform "
                        "goes through there, refused where it would build wrongly (without it "
                        "the plan reaches no engine)", False)

TREE = Option("out", "where the Dockerfile tree goes (default: beside the versions file)")
CHECK_TREE = Option("check", "write nothing; exit 1 naming every stale, missing or extra "
                             "Dockerfile", False)
COMMIT = Option("commit", "GitCommit of every entry (default: the last commit touching each "
                          "directory)")
IMAGE = Option("image_ref", "the image: python:latest, 127.0.0.1:5000/python:3.8.0, name@sha256:…",
               required=True, positional=True, field="images", convert=_one)
PAGE = Option("out", "write <out>/<repository>/remote/<tag>.md instead of printing the page")
PAGES = Option("out", "where the summary pages and the HTML report go: <out>/<repository>/"
                      "remote/<tag>.md, <out>/<repository>/index.html", DEFAULT_PAGES)
HTML_OUT = Option("out", "where the HTML report of the run goes: <out>/<repository>/index.html",
                  DEFAULT_PAGES)
SAVED_REPORT = Option("report", "a saved JSON report: the --report FILE of a release, build or "
                                "publish", required=True, positional=True)
HTML = Option("html", "write the page to <html>/<repository>/index.html, each tag's page to "
                      "<html>/<repository>/tags/", DEFAULT_PAGES)
PUSH = Option("push", "push each per-arch image to --registry after its platform check", False)
FROM_REPORT = Option("from_report", "the report of a `build --push` this publishes (repeatable: "
                                    "one per runner of a fanned-out build): list the digests "
                                    "they pushed or found unchanged (a moved tag fails; two "
                                    "digests for one job are refused)", repeatable=True)
PLAN_FORMAT = Option("format", "text, json (every job: key, pool, per-arch image, tags, "
                               "emulated or not, a time estimate) or github-matrix (an "
                               "`include:` list for a CI matrix)", "text")
MATRIX_PER = Option("per", "with github-matrix: an entry per job, or per platform (one "
                           "`build --platform P` runner each)", "job")
REGISTRY_PORT = Option("port", "the loopback port", DEFAULT_REGISTRY_PORT)
STOP_REGISTRY = Option("stop", "stop the registry this command started from here "
                               "(.cache/registry)", False)
ONLY = Option("version", "fill only this version (repeatable; default: every version with a "
                         "sha256)", repeatable=True, field="only")
MIRROR_DIR = Option("dir", "the mirror directory, python.org's layout (default: this machine's, "
                           "~/.cache/python-image-builder/mirror)", field="directory", convert=Path)
MIRROR_FROM = Option("source", "where sources come from: debian (Debian's source archive) or an "
                               "upstream-layout URL such as https://www.python.org/ftp/python/",
                     DEFAULT_MIRROR_SOURCE)
KEYS_URL = Option("keys_url", "with a URL source: where <FINGERPRINT>.asc keys are (else the "
                              "mirror's own)")
BASE_MIRROR = Option("registry", "the base mirror the Debian bases go to (default: the local "
                                 "registry of the `registry` command, started)")
SUITE = Option("suite", "a Debian suite of the bases (repeatable)", DEFAULT_SUITES,
               repeatable=True, field="suites")
BASE_PLATFORM = Option("platform", "a platform of the bases (repeatable, or a comma list; others "
                                   "than amd64 and i386 run under QEMU)", DEFAULT_BASE_PLATFORMS,
                       repeatable=True, field="platforms", convert=platform_names)
NO_BASES = Option("no_bases", "fill sources and keys only", False, field="make_bases",
                  convert=operator.not_)
SLIM_ONLY = Option("slim_only", "of the Debian bases, make only debian:<suite>-slim", False)
MIRROR_PORT = Option("port", "the mirror server's loopback port", DEFAULT_MIRROR_PORT)
NO_SERVE = Option("no_serve", "fill only; do not start the server", False, field="start_server",
                  convert=operator.not_)
STOP_MIRROR = Option("stop", "stop the mirror server started for --dir, saying which", False)
SERIES = Option("series", "update only this series, 3.13 (repeatable; default: every one in the "
                          "file)", repeatable=True)
INDEX = Option("source", "the release index: python.org's ftp/python/, a mirror in its "
                         "layout (http://127.0.0.1:8600/python/), or debian (Debian's archive: "
                         "a release vouched for by its upload's signed .dsc)", PYTHON_ORG)
CHECK_RELEASES = Option("check", "write nothing; exit 0 when up to date, 1 when a newer "
                                 "release exists, 4 when the source cannot be read", False)

# Every command's, handled once by the CLI rather than by each command.
QUIET = Option("quiet", "print only errors and the verdict", False)
JSON = Option("json", "print the report as JSON on stdout (the rest of the output goes to "
                      "stderr)", False)
COMMON = (QUIET, JSON)

# --- each command's options, in the order its help lists them ----------------------------------

GENERATE = (VERSIONS, TEMPLATES, TREE, CHECK_TREE)
LIBRARY = (VERSIONS, COMMIT)
SUMMARY = (IMAGE, PAGE, CA_BUNDLE, CONCURRENCY)
PLAN = (VERSION, VARIANT, PLATFORM, PLAN_FORMAT, MATRIX_PER, REGISTRY, BUILDERS, VERSIONS,
        ARCH_NAMESPACE, PROBE)
BUILD = (VERSION, VARIANT, PLATFORM, PUSH, REGISTRY, BUILDERS, FORCE, NO_CACHE, DRY_RUN, LOGS,
         VERSIONS, ARCH_NAMESPACE, REPORT, HTML_OUT, CONCURRENCY)
PUBLISH = (VERSION, REGISTRY.needed(), VARIANT, PLATFORM, OCI, ALLOW_MISSING, ALLOW_LAGGING,
           ARCH_NAMESPACE, VERSIONS, DRY_RUN, CA_BUNDLE, REPORT, HTML_OUT, BUILDERS, FROM_REPORT,
           CONCURRENCY)
RELEASE = (VERSION, REGISTRY.needed(), VARIANT, PLATFORM, BUILDERS, REPORT, PAGES, OCI,
           ARCH_NAMESPACE, ALLOW_MISSING, ALLOW_LAGGING, FORCE, NO_CACHE, DRY_RUN, LOGS, VERSIONS,
           TEMPLATES, CA_BUNDLE, CONCURRENCY)
REGISTRY_COMMAND = (REGISTRY_PORT, STOP_REGISTRY)
MIRROR = (VERSIONS, ONLY, MIRROR_DIR, MIRROR_FROM, KEYS_URL, BASE_MIRROR, SUITE, BASE_PLATFORM,
          NO_BASES, SLIM_ONLY, MIRROR_PORT, NO_SERVE, STOP_MIRROR)
UPDATE = (SERIES, INDEX, VERSIONS, CHECK_RELEASES, DRY_RUN, REPORT)
REPORT_COMMAND = (SAVED_REPORT, HTML)
