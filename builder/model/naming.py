"""Where images live: the per-arch image of a job and the published tag, by the naming rules.

Pure: the build stage pushes to, and the publish stage looks up, the same `arch_reference`.
"""
from __future__ import annotations

from builder.model.errors import InputError
from builder.model.platforms import Platform
from builder.model.reference import ImageRef, registry_problem
from builder.model.versions import Variant, Version

# Official-images namespaces that differ from the platform's name.
_NAMESPACES = {"windows-amd64": "winamd64"}


def check_registry(registry: str) -> str:
    """`registry` (``--registry``) as given, when it is a host[:port][/path]. Credentials in it
    (``user:pw@host``) are refused apart: they would be echoed in the plan, the logs and the
    report, and that message never repeats them."""
    if "@" in registry:
        host = registry.rpartition("@")[2]
        raise InputError(f"credentials in the registry name are refused: they would show in the "
                         f"output, the logs and the report; give --registry {host} and set "
                         "BUILDER_REGISTRY_USERNAME and BUILDER_REGISTRY_PASSWORD, or run "
                         f"docker login {host.partition('/')[0]}", field="--registry")
    problem = registry_problem(registry, path=True)
    if problem:
        raise InputError(problem, field="--registry")
    return registry


def arch_namespace(platform: Platform) -> str:
    """The per-arch namespace of `platform`: ``arm64v8``, ``winamd64``."""
    return _NAMESPACES.get(platform.name, platform.name)


def arch_reference(registry: str, repository: str, version: Version, variant: Variant,
                   platform: Platform, *, arch_namespace_layout: bool = False) -> ImageRef:
    """Where the build stage pushes, and the publish stage finds, one per-arch image.

    Default: an arch-suffixed tag in the target repository,
    ``<registry>/<repository>:<version>-<variant>-<platform>``
    (``127.0.0.1:5000/python:3.8.0-buster-arm64v8``). With `arch_namespace_layout`:
    ``<registry>/<namespace>/<repository>:<version>-<variant>``
    (``127.0.0.1:5000/arm64v8/python:3.8.0-buster``, Windows under ``winamd64``).
    `registry` is a host, optionally with a path (``registry.example.com/team``).
    """
    check_registry(registry)
    if arch_namespace_layout:
        return ImageRef.parse(f"{registry}/{arch_namespace(platform)}/{repository}:"
                              f"{version.full}-{variant.name}")
    return ImageRef.parse(f"{registry}/{repository}:{version.full}-{variant.name}-{platform.name}")


def target_reference(registry: str, repository: str, tag: str) -> ImageRef:
    """The published tag: ``<registry>/<repository>:<tag>``."""
    check_registry(registry)
    return ImageRef.parse(f"{registry}/{repository}:{tag}")
