"""invoke tasks: the command line of the orchestrator (`invoke --list`).

Option names are the same across tasks: --version, --variant, --platform,
--registry, --builders, --report, --dry-run, --versions, --templates.
Exit codes: 0 done, 1 some job or tag failed, 2 bad input or configuration, 3 partial
(`update`: a version bumped, its Windows installer not found), 130 interrupted.
"""
from __future__ import annotations

import os
import signal
import sys

from invoke import Exit, task

from builder.model.errors import EXIT_INTERRUPTED, BuilderError

DEFAULT_VERSIONS = "versions.yaml"
_VERSIONS_HELP = f"the versions file (default {DEFAULT_VERSIONS})"
_OUT_HELP = "the HTML report goes to <out>/<repository>/index.html (default out)"


def _interrupt(signum, frame) -> None:
    """SIGTERM (a pipeline cancelling the job) stops a run as Ctrl-C does: running steps are
    killed and the report says which stage was interrupted. A second signal exits at once."""
    signal.signal(signal.SIGINT, _exit_at_once)
    signal.signal(signal.SIGTERM, _exit_at_once)
    # os.write: a handler that used print could land inside another print to stderr.
    os.write(2, f"{signal.Signals(signum).name}: stopping the running jobs; "
                "a second signal exits at once\n".encode())
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit_at_once(signum, frame) -> None:
    os.write(2, f"{signal.Signals(signum).name} again: exiting at once\n".encode())
    os._exit(EXIT_INTERRUPTED)


def _run(function, *args) -> None:
    """Run a stage (`stage.run(options)`); its result's exit code (or an int) is the task's.
    Errors become one line and their exit code."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = function(*args)
    except BuilderError as error:
        print(f"error: {error}", file=sys.stderr)
        raise Exit(code=error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise Exit(code=EXIT_INTERRUPTED)
    code = result if isinstance(result, int) else getattr(result, "exit_code", 0)
    if code:
        raise Exit(code=code)


@task(help={"image_ref": "the image: python:latest, 127.0.0.1:5000/python:3.8.0, name@sha256:…",
            "out": "write <out>/<repository>/remote/<tag>.md instead of printing the page",
            "ca_bundle": "PEM file of the CA that signed the registry's certificate",
            "registry_concurrency": "requests in flight per registry (default 8)"})
def summary(c, image_ref, out=None, ca_bundle=None, registry_concurrency=8):
    """Print the summary page of an image as its registry serves it now (repo-info's format)."""
    from builder.summary import fetch as stage

    _run(stage.run, stage.SummaryOptions((image_ref,), out=out, ca_bundle=ca_bundle,
                                         registry_concurrency=int(registry_concurrency)))


@task(auto_shortflags=False, iterable=["variant", "platform"],
      help={"version": "the version to publish: 3.8.0 (or its series, 3.8)",
            "variant": "only the tags this variant (repeatable) alone makes up",
            "platform": "lists of this platform (repeatable) and of the others already "
                        "published and current",
            "registry": "where the per-arch images are and the lists go: 127.0.0.1:5000, "
                        "registry.example.com/team, docker.io",
            "oci": "write OCI image indexes instead of Docker manifest lists",
            "allow_missing": "publish tags whose per-arch images are not all there (loudly)",
            "arch_namespace": "per-arch images are <registry>/<arch>/<repository>:<version>-<variant>"
                              " (copied in first) instead of arch-suffixed tags",
            "versions": _VERSIONS_HELP,
            "dry_run": "say what would be written; write nothing",
            "ca_bundle": "PEM file of the CA that signed the registry's certificate",
            "report": "write the JSON report here: per tag the list digest, platforms, result",
            "builders": "the builders file: its base and source mirrors are part of each "
                        "image's build hash, which must be the plan's",
            "from_report": "the report of the `invoke build --push` this publishes: list the "
                           "digests it pushed or found unchanged (a moved tag fails)",
            "registry_concurrency": "requests in flight per registry (default 8)",
            "out": _OUT_HELP})
def publish(c, version, registry, oci=False, allow_missing=False, arch_namespace=False,
            versions=DEFAULT_VERSIONS, dry_run=False, ca_bundle=None, report=None,
            builders=None, from_report=None, variant=None, platform=None, registry_concurrency=8,
            out="out"):
    """Write a manifest list (or OCI index) for every tag and shared tag of a version, of the
    per-arch images --from-report's build pushed, else of those whose build hash is the plan's."""
    from builder.publish import writer as stage

    _run(stage.run, stage.PublishOptions(version, registry, versions=versions, oci=oci,
                                     allow_missing=allow_missing, arch_namespace=arch_namespace,
                                     dry_run=dry_run, ca_bundle=ca_bundle, report=report,
                                     builders=builders, from_report=from_report,
                                     variants=tuple(variant or ()),
                                     platforms=tuple(platform or ()),
                                     registry_concurrency=int(registry_concurrency), out=out))


@task(help={"versions": _VERSIONS_HELP,
            "templates": "the templates directory (default: templates/ next to the versions file)",
            "out": "where the Dockerfile tree goes (default: next to the versions file)",
            "check": "write nothing; exit 1 naming every stale, missing or extra Dockerfile"})
def generate(c, versions=DEFAULT_VERSIONS, templates=None, out=None, check=False):
    """Render the Dockerfiles from the versions file and the templates."""
    from builder.generate import render as stage

    _run(stage.run, stage.GenerateOptions(versions, templates=templates, out=out, check=check))


@task(help={"versions": _VERSIONS_HELP,
            "commit": "GitCommit for every entry (default: the last commit touching each directory)"})
def library(c, versions=DEFAULT_VERSIONS, commit=None):
    """Print the official-images style library file: tags, architectures, commit, directory."""
    from builder.generate import library as stage

    _run(stage.run, stage.LibraryOptions(versions, commit=commit))


@task(auto_shortflags=False, iterable=["variant", "platform"],
      help={"version": "the version to build: 3.8.0 (or its series, 3.8)",
            "variant": "build only this variant (repeatable); default: all of the version's",
            "platform": "build only this platform, amd64 or linux/arm/v7 (repeatable)",
            "push": "push each per-arch image to --registry after its platform check",
            "registry": "where the per-arch images go: 127.0.0.1:5000, registry.example.com/team",
            "builders": "the builders file: engines and the platforms they build "
                        "(default $BUILDER_BUILDERS, else the local engine)",
            "force": "build and push even when the registry holds an image with the same build hash",
            "no_cache": "build without the engine's layer cache",
            "dry_run": "print the plan (job, engine, image, tags, skip reasons); build nothing",
            "logs": "the directory of the build logs: <logs>/<version>/<variant>/<platform>.log",
            "versions": _VERSIONS_HELP,
            "arch_namespace": "push to <registry>/<arch>/<repository>:<version>-<variant> "
                              "instead of arch-suffixed tags",
            "report": "write the JSON report here: per job the platform, engine, digest, result",
            "registry_concurrency": "requests in flight per registry (default 8)",
            "out": _OUT_HELP})
def build(c, version, variant=None, platform=None, push=False, registry=None, builders=None,
          force=False, no_cache=False, dry_run=False, logs="logs", versions=DEFAULT_VERSIONS,
          arch_namespace=False, report=None, registry_concurrency=8, out="out"):
    """Build (and push) the per-arch images of a version on the configured engines, in parallel."""
    from builder.farm import runner as stage

    _run(stage.run, stage.BuildOptions(
        version, tuple(variant or ()), tuple(platform or ()), registry, push=push,
        builders=builders, force=force, nocache=no_cache, dry_run=dry_run, logs=logs,
        versions=versions, arch_namespace=arch_namespace, report=report,
        registry_concurrency=int(registry_concurrency), out=out))


@task(auto_shortflags=False, iterable=["variant", "platform"],
      help={"version": "the version to release: 3.8.0 (or its series, 3.8)",
            "registry": "where the per-arch images and the tags go: 127.0.0.1:5000, "
                        "registry.example.com/team",
            "variant": "build only this variant (repeatable), and publish only the tags it alone makes up",
            "platform": "build only this platform (repeatable); the lists then hold only those platforms",
            "builders": "the builders file (default $BUILDER_BUILDERS, else the local engine)",
            "report": "write the JSON report here: jobs, tags, summary pages, exit code",
            "out": "where the summary pages and the HTML report go: "
                   "<out>/<repository>/remote/<tag>.md, <out>/<repository>/index.html (default out)",
            "oci": "write OCI image indexes instead of Docker manifest lists",
            "arch_namespace": "push per-arch images to <registry>/<arch>/<repository> "
                              "and copy them in when publishing",
            "allow_missing": "publish tags whose per-arch images are not all there (loudly)",
            "force": "build and push even when the registry holds the same build",
            "no_cache": "build without the engine's layer cache",
            "dry_run": "check the tree, print the plan and the tags; build and write nothing",
            "logs": "the directory of the build logs (default logs)",
            "versions": _VERSIONS_HELP,
            "templates": "the templates directory (default: templates/ beside the versions file)",
            "ca_bundle": "PEM file of the CA that signed the registry's certificate",
            "registry_concurrency": "requests in flight per registry, shared by every stage (default 8)"})
def release(c, version, registry, variant=None, platform=None, builders=None, report=None,
            out="out", oci=False, arch_namespace=False, allow_missing=False, force=False,
            no_cache=False, dry_run=False, logs="logs", versions=DEFAULT_VERSIONS,
            templates=None, ca_bundle=None, registry_concurrency=8):
    """generate --check → build → push → publish → summary pages; stops at the first failing stage."""
    from builder.commands import release as stage

    _run(stage.run, stage.ReleaseOptions(
        version, registry, tuple(variant or ()), tuple(platform or ()), builders=builders,
        versions=versions, templates=templates, out=out, report=report, oci=oci,
        arch_namespace=arch_namespace, allow_missing=allow_missing, force=force,
        nocache=no_cache, logs=logs, dry_run=dry_run, ca_bundle=ca_bundle,
        registry_concurrency=int(registry_concurrency)))


@task(auto_shortflags=False,
      help={"report": "a saved JSON report: --report FILE of a release, build or publish",
            "html": "write the page to <html>/<repository>/index.html, a page per tag beside "
                    "(default out)"})
def report(c, report, html="out"):
    """Render a saved report as HTML again: the tag matrix, the engines' timeline, the pages."""
    from builder.report import write as stage

    _run(stage.run, stage.ReportOptions(report, html))


@task(help={"port": "the loopback port (default 5000)",
            "stop": "stop the registry this task started"})
def registry(c, port=5000, stop=False):
    """Start a local registry on 127.0.0.1 to release to (or find one running there)."""
    from builder.mirror import localregistry

    if stop:
        _run(localregistry.stop)
    else:
        _run(localregistry.start, int(port))


# --- the source and base mirrors for builds without the internet (issue 11) -----------------

@task(auto_shortflags=False, iterable=["version", "suite", "platform"],
      help={"versions": _VERSIONS_HELP,
            "version": "fill only this version (repeatable); default: every version with a sha256",
            "dir": "the mirror directory, python.org's layout (default ~/.cache/python-image-builder/mirror)",
            "source": "where sources come from: debian (Debian's source archive, the default) "
                      "or an upstream-layout URL such as https://www.python.org/ftp/python/",
            "keys_url": "with a URL source: where <FINGERPRINT>.asc keys are (else the mirror's own)",
            "registry": "the base mirror for the Debian bases (default: invoke registry's, started)",
            "suite": "Debian suites of the bases (repeatable; default trixie and bookworm)",
            "platform": "platforms of the bases (repeatable; default amd64 and i386; others use QEMU)",
            "no_bases": "fill sources and keys only",
            "slim_only": "of the Debian bases, make only debian:<suite>-slim",
            "port": "the server's loopback port (default 8600)",
            "no_serve": "fill only; do not start the server",
            "stop": "stop the server this task started for --dir"})
def mirror(c, versions=DEFAULT_VERSIONS, version=None, dir=None, source="debian",
           keys_url=None, registry=None, suite=None, platform=None, no_bases=False,
           slim_only=False, port=8600, no_serve=False, stop=False):
    """Fill the source mirror (verified) and the Debian bases, and serve them for offline builds."""
    from pathlib import Path

    from builder.mirror import bases
    from builder.mirror import command, serve

    if stop:
        _run(serve.stop, Path(dir) if dir else command.DEFAULT_DIR)
        return
    _run(command.run, command.MirrorOptions(
        versions=versions, only=tuple(version or ()),
        directory=Path(dir) if dir else command.DEFAULT_DIR, source=source,
        keys_url=keys_url, registry=registry, suites=tuple(suite or bases.DEBIAN_SUITES),
        platforms=tuple(platform or command.DEFAULT_PLATFORMS), make_bases=not no_bases,
        slim_only=slim_only, port=int(port), start_server=not no_serve))


# --- version bumps from a python.org-layout release index (issue 16) ------------------------

@task(auto_shortflags=False, iterable=["series"],
      help={"series": "update only this series, 3.13 (repeatable); default: every one in the file",
            "source": "the release index: python.org's ftp/python/ (the default) or a mirror in "
                      "its layout, such as http://127.0.0.1:8600/python/",
            "versions": _VERSIONS_HELP,
            "check": "write nothing; exit 1 when a newer release exists, 0 when up to date",
            "dry_run": "fetch and verify, print the diff of the versions file; write nothing",
            "report": "write what changed here as JSON"})
def update(c, series=None, source=None, versions=DEFAULT_VERSIONS, check=False, dry_run=False,
           report=None):
    """Bump each series to its newest release (verified), rewrite the versions file in place,
    regenerate. Exit 3: partial (a Windows installer was missing)."""
    from builder.update import bump as stage
    from builder.mirror import config

    _run(stage.run, stage.UpdateOptions(
        versions=versions, series=tuple(series or ()), source=source or config.PYTHON_ORG,
        check=check, dry_run=dry_run, report=report))
