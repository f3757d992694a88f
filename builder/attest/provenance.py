"""An image's SLSA v1 provenance, from the values of the job that built it (pure).

Everything in it is known when the build ends: which tool built it (version, git revision),
from what (the Dockerfile as sent, by sha256; the build hash; the base images by digest; the
source tarball's URL and sha256; each mirror with the upstream it stands for), where (the
engine, its version and architecture, and whether it ran the platform under emulation) and
when. The same job gives the same bytes, so an image rebuilt identically is attested alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://python-image-builder.invalid/build/v1"
BUILDER_ID = "https://python-image-builder.invalid/builder"


@dataclass(frozen=True)
class Dependency:
    uri: str  # a pinned image reference, a URL
    sha256: str | None = None  # bare hex
    upstream: str | None = None  # a mirror: the upstream URL it stands for


@dataclass(frozen=True)
class BuildFacts:
    version: str
    variant: str
    platform: str  # linux/arm/v7
    dockerfile_sha256: str  # of the Dockerfile as sent to the engine
    build_hash: str
    dependencies: tuple[Dependency, ...]
    started: float  # epoch seconds
    finished: float
    engine: str
    engine_version: str
    engine_architecture: str
    emulated: bool
    tool_version: str
    tool_revision: str  # the git revision of this tool, "" when unknown


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _dependency(dependency: Dependency) -> dict:
    found: dict = {"uri": dependency.uri}
    if dependency.sha256:
        found["digest"] = {"sha256": dependency.sha256}
    if dependency.upstream:
        found["annotations"] = {"upstream": dependency.upstream}
    return found


def predicate(facts: BuildFacts) -> dict:
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "version": facts.version, "variant": facts.variant, "platform": facts.platform,
                "dockerfile": {"sha256": facts.dockerfile_sha256},
                "buildHash": facts.build_hash,
            },
            "internalParameters": {
                "engine": {"name": facts.engine, "version": facts.engine_version,
                           "architecture": facts.engine_architecture},
                "emulated": facts.emulated,
            },
            "resolvedDependencies": [_dependency(d) for d in facts.dependencies],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID,
                        "version": {"python-image-builder": facts.tool_version,
                                    "revision": facts.tool_revision}},
            "metadata": {"invocationId": facts.build_hash,
                         "startedOn": rfc3339(facts.started),
                         "finishedOn": rfc3339(facts.finished)},
        },
    }
