"""Stage plan: which (version, variant, platform) jobs to build, by which pool of engines, under which name.

Pure: the family, the builders and the user's selection in; a `Plan` out. Nothing here
talks to Docker or a registry, so `invoke build --dry-run` can print it anywhere.

A plan also holds every member of the version as a job (`Plan.members`), whatever the selection
and whichever engines there are: publish reads each member's per-arch image and compares its
build hash with the one the plan builds now, also for a platform no engine here serves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builder.model.builders import Builders
from builder.model.errors import InputError
from builder.model.naming import arch_reference
from builder.model.platforms import Platform, oci_text, platform as parse_platform
from builder.model.reference import DOCKER_HUB, ImageRef
from builder.generate.render import dockerfile_path, render
from builder.model.smoke import Check, for_variant
from builder.model.tags import variant_tags
from builder.model.versions import Family, Variant, Version


@dataclass(frozen=True)
class _Target:
    """What a job is for; its key names it in the plan, the progress display, logs and report."""
    version: Version
    variant: Variant
    platform: Platform  # Windows: carries the variant's os.version

    @property
    def key(self) -> str:
        return f"{self.version.full}/{self.variant.name}/{self.platform.name}"


@dataclass(frozen=True)
class BuildJob(_Target):
    dockerfile: Path  # relative to the tree: 3.8/buster/Dockerfile
    dockerfile_text: str  # as rendered; the build stage pins its FROM lines
    pool: tuple[str, ...]  # the engines that may build it; the build stage picks one as it runs
    image: ImageRef  # per-arch, to tag and push: 127.0.0.1:5000/python:3.8.0-buster-amd64
    tags: tuple[str, ...]  # the tags whose lists will hold this image (publish writes them)
    build_args: dict[str, str] = field(compare=False)
    parent: str | None = None  # key of the job this one builds FROM (same family, same platform)
    checks: tuple[Check, ...] = ()  # smoke tests the image must pass before its push


@dataclass(frozen=True)
class SkippedJob(_Target):
    reason: str


@dataclass(frozen=True)
class Plan:
    family: Family
    version: Version
    jobs: tuple[BuildJob, ...]  # dependency order: a parent comes before its children
    skipped: tuple[SkippedJob, ...]
    builders: Builders
    registry: str | None  # where the images are pushed; None builds local images only
    # Every (variant, platform) of the version, selected or not, served or not (a pool may be
    # empty); never run: publish reads and hashes each member.
    members: tuple[BuildJob, ...] = ()

    def describe(self) -> str:
        """The plan as text: what --dry-run prints."""
        engines = ", ".join(f"{e.name} ({e.url})" for e in self.builders.engines) or "none"
        lines = [f"plan for {self.family.repository} {self.version.full}: {len(self.jobs)} jobs, "
                 f"{len(self.skipped)} skipped; engines: {engines}"]
        if self.builders.base_mirror:
            lines.append(f"base images from mirror {self.builders.base_mirror}")
        if self.builders.problem:
            lines.append(f"warning: {self.builders.problem}")
        lines.extend(self._pools())
        # One block per variant: its tags once, then a line per job.
        rows: dict[str, list[str]] = {}
        width = max((len(j.key) for j in (*self.jobs, *self.skipped)), default=0)
        pool_width = max((len(" | ".join(j.pool)) for j in self.jobs), default=0)
        for job in self.jobs:
            after = f"  after {job.parent}" if job.parent else ""
            rows.setdefault(job.variant.name, []).append(
                f"    {job.key:<{width}}  {' | '.join(job.pool):<{pool_width}}  {job.image}{after}")
        for job in self.skipped:
            rows.setdefault(job.variant.name, []).append(f"    {job.key:<{width}}  skipped: {job.reason}")
        for variant in self.version.variants:
            if variant.name in rows:
                tags = variant_tags(self.family, self.version, variant)
                lines.append(f"  {variant.name}  tags: {' '.join(tags.tags + tags.shared_tags)}")
                lines.extend(rows[variant.name])
        return "\n".join(lines)

    def _pools(self) -> list[str]:
        """Each platform's pool once: its engines with their build (and push) slots. Which engine
        builds a job is decided as the run goes, by load."""
        engines = {e.name: e for e in self.builders.engines}
        pools: dict[str, tuple[str, ...]] = {}
        for job in self.jobs:
            shown = job.platform.name + (f" ({job.platform.os_version})"
                                         if job.platform.os_version else "")
            pools.setdefault(shown, job.pool)
        lines = []
        for shown, pool in pools.items():
            members = []
            for name in pool:
                engine = engines[name]
                pushes = (f", {engine.pushes} push{'es' if engine.pushes > 1 else ''} at once"
                          if engine.pushes < engine.concurrency else "")
                builder = f", builder {engine.builder}" if engine.builder else ""
                members.append(f"{name} ({engine.concurrency} at once{pushes}{builder})")
            lines.append(f"  pool {shown}: {', '.join(members)}")
        return lines


def build_args(target: Platform) -> dict[str, str]:
    """The TARGET* arguments BuildKit would set; the classic builder leaves them empty.

    BuildKit normalizes arm64/v8 to plain arm64, so Dockerfiles testing
    "$TARGETARCH$TARGETVARIANT" see "arm64" there; we pass the same.
    """
    variant = "" if target.architecture == "arm64" else (target.variant or "")
    return {"TARGETPLATFORM": oci_text(target.os, target.architecture, variant),
            "TARGETOS": target.os, "TARGETARCH": target.architecture, "TARGETVARIANT": variant}


def plan(family: Family, version: str | Version, variants: tuple[str, ...] = (),
         platforms: tuple[str, ...] = (), *, builders: Builders, registry: str | None = None,
         arch_namespace: bool = False) -> Plan:
    """The jobs of `version`, filtered by variant and platform names, each with its pool.

    An unknown variant or platform, or a platform no selected variant builds, is an
    InputError: nothing runs. A job no engine serves is skipped with the reason.
    """
    if isinstance(version, str):
        version = family.version(version)
    chosen = [version.variant(name) for name in dict.fromkeys(variants)] or list(version.variants)
    wanted = {parse_platform(name).name for name in dict.fromkeys(platforms)}
    offered = {p.name for v in chosen for p in v.platforms}
    missing = sorted(wanted - offered)
    if missing:
        raise InputError(f"{', '.join(missing)}: no selected variant of {version.full} builds "
                         f"that; they build: {', '.join(sorted(offered))}", field="platform")
    parents = _parents(family, version)
    members = _members(family, version, parents, builders=builders, registry=registry,
                       arch_namespace=arch_namespace)
    jobs: list[BuildJob] = []
    skipped: list[SkippedJob] = []
    for variant in _dependency_order(version, chosen, parents):
        parent = parents.get(variant.name)
        for target in variant.platforms:
            if wanted and target.name not in wanted:
                continue
            job = members[_Target(version, variant, target).key]
            reason = None
            if not job.pool:
                reason = builders.no_engine_reason(target)
            elif job.parent and job.parent not in {j.key for j in jobs}:
                reason = (f"it builds FROM {job.parent}, which is not in this run"
                          if parent not in chosen else f"its parent {job.parent} is skipped")
            if reason:
                skipped.append(SkippedJob(version, variant, target, reason))
            else:
                jobs.append(job)
    return Plan(family, version, tuple(jobs), tuple(skipped), builders, registry,
                tuple(members.values()))


def _members(family: Family, version: Version, parents: dict[str, Variant], *,
             builders: Builders, registry: str | None,
             arch_namespace: bool) -> dict[str, BuildJob]:
    """Every (variant, platform) of `version` as a job, by key, in the versions file's order."""
    texts = render(family)
    members = {}
    for variant in version.variants:
        text = texts[dockerfile_path(version, variant)]
        tags = variant_tags(family, version, variant)
        parent = parents.get(variant.name)
        for target in variant.platforms:
            job = BuildJob(
                version, variant, target, dockerfile_path(version, variant), text,
                tuple(e.name for e in builders.pool_for(target)),
                # Without a registry the images stay local, named as on Docker Hub.
                arch_reference(registry or DOCKER_HUB, family.repository, version, variant,
                               target, arch_namespace_layout=arch_namespace),
                (*tags.tags, *tags.shared_tags), build_args(target),
                f"{version.full}/{parent.name}/{target.name}" if parent else None,
                for_variant(family.checks, variant.name, variant.is_windows))
            members[job.key] = job
    return members


def _parents(family: Family, version: Version) -> dict[str, Variant]:
    """variant name → the variant of the same version it builds FROM (our own image)."""
    by_tag = {}
    for variant in version.variants:
        tags = variant_tags(family, version, variant)
        for tag in (*tags.tags, *tags.shared_tags):
            by_tag.setdefault(tag, variant)
    parents = {}
    for variant in version.variants:
        ref = ImageRef.parse(variant.base_image)
        if ref.registry == DOCKER_HUB and ref.familiar_repository == family.repository \
                and ref.tag in by_tag:
            parents[variant.name] = by_tag[ref.tag]
    return parents


def _dependency_order(version: Version, chosen: list[Variant],
                      parents: dict[str, Variant]) -> list[Variant]:
    ordered: list[Variant] = []
    visiting: set[str] = set()

    def visit(variant: Variant) -> None:
        if variant in ordered:
            return
        if variant.name in visiting:
            raise InputError(f"variants of {version.full} build FROM each other in a cycle "
                             f"through {variant.name}", field="base-image")
        visiting.add(variant.name)
        parent = parents.get(variant.name)
        if parent is not None and parent in chosen:
            visit(parent)
        ordered.append(variant)

    for variant in chosen:
        visit(variant)
    return ordered
