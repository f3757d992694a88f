"""invoke tasks: the command line of the orchestrator (`invoke --list`).

Option names are the same across tasks: --version, --variant, --platform,
--registry, --builders, --report, --dry-run, --versions, --templates.
Exit codes: 0 done, 1 some job or tag failed, 2 bad input or configuration.
"""
from __future__ import annotations

import sys

from invoke import Exit, task

from builder.errors import BuilderError

DEFAULT_VERSIONS = "versions.yaml"
DEFAULT_TEMPLATES = "templates"


def _run(stage, *args, **kwargs) -> None:
    """Run a stage; its int result is the exit code. Errors become one line and their exit code."""
    try:
        code = stage(*args, **kwargs) or 0
    except BuilderError as error:
        print(f"error: {error}", file=sys.stderr)
        raise Exit(code=error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise Exit(code=130)
    if code:
        raise Exit(code=code)


@task(help={"image_ref": "the image: python:latest, 127.0.0.1:5000/python:3.8.0, name@sha256:…",
            "out": "write <out>/<repository>/remote/<tag>.md instead of printing the page",
            "ca_bundle": "PEM file of the CA that signed the registry's certificate"})
def summary(c, image_ref, out=None, ca_bundle=None):
    """Print the summary page of an image as its registry serves it now (repo-info's format)."""
    from builder import summary as stage

    _run(stage.run, image_ref, out=out, ca_bundle=ca_bundle)


@task(auto_shortflags=False,
      help={"version": "the version to publish: 3.8.0 (or its series, 3.8)",
            "registry": "where the per-arch images are and the lists go: 127.0.0.1:5000, "
                        "registry.example.com/team, docker.io",
            "oci": "write OCI image indexes instead of Docker manifest lists",
            "allow_missing": "publish tags whose per-arch images are not all there (loudly)",
            "arch_namespace": "per-arch images are <registry>/<arch>/<repository>:<version>-<variant>"
                              " (copied in first) instead of arch-suffixed tags",
            "versions": f"the versions file (default {DEFAULT_VERSIONS})",
            "dry_run": "say what would be written; write nothing",
            "ca_bundle": "PEM file of the CA that signed the registry's certificate"})
def publish(c, version, registry, oci=False, allow_missing=False, arch_namespace=False,
            versions=DEFAULT_VERSIONS, dry_run=False, ca_bundle=None):
    """Write a manifest list (or OCI index) for every tag and shared tag of a version."""
    from builder import publish as stage

    _run(stage.run, version, registry, versions_path=versions, oci=oci,
         allow_missing=allow_missing, arch_namespace_layout=arch_namespace, dry_run=dry_run,
         ca_bundle=ca_bundle)


@task(help={"versions": "the versions file (default: versions.yaml)",
            "templates": "the templates directory (default: templates/ next to the versions file)",
            "out": "where the Dockerfile tree goes (default: next to the versions file)",
            "check": "write nothing; exit 1 naming every stale, missing or extra Dockerfile"})
def generate(c, versions=DEFAULT_VERSIONS, templates=None, out=None, check=False):
    """Render the Dockerfiles from the versions file and the templates."""
    from builder import render

    _run(render.command, versions, templates=templates, out=out, check_only=check)


@task(help={"versions": "the versions file (default: versions.yaml)",
            "commit": "GitCommit for every entry (default: the last commit touching each directory)"})
def library(c, versions=DEFAULT_VERSIONS, commit=None):
    """Print the official-images style library file: tags, architectures, commit, directory."""
    from builder import library as library_stage

    _run(library_stage.command, versions, commit=commit)


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
            "versions": f"the versions file (default {DEFAULT_VERSIONS})",
            "arch_namespace": "push to <registry>/<arch>/<repository>:<version>-<variant> "
                              "instead of arch-suffixed tags"})
def build(c, version, variant=None, platform=None, push=False, registry=None, builders=None,
          force=False, no_cache=False, dry_run=False, logs="logs", versions=DEFAULT_VERSIONS,
          arch_namespace=False):
    """Build (and push) the per-arch images of a version on the configured engines, in parallel."""
    from builder import build as stage

    def build_stage(**kwargs) -> int:
        outcome = stage.command(**kwargs)
        return outcome.exit_code if outcome else 0

    _run(build_stage, version=version, variants=variant or (), platforms=platform or (),
         registry=registry, push=push, builders=builders, force=force, nocache=no_cache,
         dry_run=dry_run, logs=logs, versions_path=versions, arch_namespace=arch_namespace)
