"""The registry requests of a full release of today's family, and of a no-op re-release, per
host, counted through the real stages against Docker Hub's published pull limits.

Everything a release pipeline would run, as it runs: buildpack-deps' release, then one
`invoke release` per Python version (`builder.commands.release.run`: generate check, build and
push, publish, summary pages) to Docker Hub, per-arch images in the official images' arch
namespaces (docker.io/amd64/python:3.14.6-slim-trixie), the bases from Docker Hub and
mcr.microsoft.com. Two things stand in: the registries are one in-memory registry
(testbed/memregistry.py: Docker Hub's token challenge included, every request counted), and
the engines are stand-ins that build at once (testbed/standin.py: their pulls and pushes
reach the registry as a daemon's would, counted apart as the engines').

Docker Hub's limits, as its documentation states them (docker/docs,
content/manuals/docker-hub/usage/pulls.md, "Docker Hub pull usage and limits"; this machine
has no network to check today's page, the figures are from the stored copy at commit
000a96d3, where an earlier revision, bb3cdd21, gave 10 and 40 per hour instead): pulls per 6
hours, anonymous 100 per IPv4 address or IPv6 /64 subnet, Docker Personal 200, Pro, Team and
Business unlimited (fair use). A pull is a GET of a manifest, one per architecture of a
multi-arch image; a HEAD (a "version check") is not one. Its abuse limit, on every request,
is "in the order of thousands of requests per minute" per address.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import farm_model
from builder.commands import release
from builder.generate import tree
from builder.model import versions
from builder.model.reference import ImageRef
from testbed.memregistry import DOCKER_HUB_API, MemoryRegistry
from testbed.standin import standing_in

HOSTS = {"docker.io": DOCKER_HUB_API, "mcr.microsoft.com": "mcr.microsoft.com"}
HUB_BASES = ("/v2/library/debian/", "/v2/library/alpine/")
PULLS_PER_6H = {"anonymous (per IPv4 address or IPv6 /64)": 100, "Docker Personal": 200}


def report(python, bases, the_farm: farm_model.Farm = farm_model.FARMS[0]) -> None:
    registry = MemoryRegistry()
    with tempfile.TemporaryDirectory(prefix="farm-budget-") as workdir, \
            standing_in(registry, tuple(HOSTS.values())):
        work = Path(workdir)
        _seed(registry, python, bases)
        families = _write(work, python, bases, the_farm)
        full = [_release(work, registry, *family) for family in families]
        noop = [_release(work, registry, *family) for family in families]
    print(f"\nregistry requests of a release of the family ({len(full)} release runs: "
          f"buildpack-deps, then each Python version), farm {the_farm.name!r}")
    for title, runs in (("full release", full), ("no-op re-release", noop)):
        _print(title, runs)
    limits = ", ".join(f"{who} {n}" for who, n in PULLS_PER_6H.items())
    print(f"  Docker Hub's pull limit per 6 hours: {limits}; Pro, Team, Business: none")


def _release(work: Path, registry: MemoryRegistry, versions_file: Path, templates: Path,
             version: str, bases: frozenset[str]) -> tuple[str, list]:
    """One release run, its requests; asserts that it read each base's tag (`bases`: their
    manifest paths) at most once."""
    registry.take()
    result = release.run(release.ReleaseOptions(
        version, "docker.io", builders=str(work / "builders.yaml"), versions=str(versions_file),
        templates=str(templates), out=str(work / "out"), logs=str(work / "logs"),
        arch_namespace=True), out=io.StringIO())
    if result.exit_code:
        raise SystemExit(f"the release of {version} failed: {json.dumps(result.report.stages)}")
    seen = registry.take()
    reads = Counter(s.path for s in seen if s.who == "client" and s.method == "GET"
                    and s.path in bases)
    assert all(n == 1 for n in reads.values()), f"{version}: a base's tag read twice: {reads}"
    return version, seen


def _print(title: str, runs: list) -> None:
    seen = [s for _, run in runs for s in run]
    print(f"  {title}: {len(seen)} requests")
    for host, who in sorted({(s.host, s.who) for s in seen}):
        kinds = Counter(f"{s.kind} {s.method}" for s in seen if (s.host, s.who) == (host, who))
        print(f"    {host:<22} {who:<6} {sum(kinds.values()):>6}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    gets = [s for s in seen if s.host == DOCKER_HUB_API and s.kind == "manifest"
            and s.method == "GET"]
    hub_bases = [s for s in gets if s.path.startswith(HUB_BASES)]
    missing = sum(1 for s in gets if s.status == 404)
    print(f"    Docker Hub manifest GETs (a pull each): {len(gets)}, {missing} of them answered "
          f"404; {sum(1 for s in gets if s.who == 'engine')} by the engines. Of Docker Hub's own "
          f"bases (debian, alpine): {len(hub_bases)}, all that a release to another registry "
          "would pull there")
    print("    each base's tag read at most once per run (asserted)")


def _bases(family, version) -> frozenset[str]:
    """The manifest paths of the tags `version`'s variants build FROM, outside the family."""
    found = set()
    for variant in version.variants:
        ref = ImageRef.parse(variant.base_image)
        if ref.familiar_repository != family.repository:
            found.add(f"/v2/{ref.repository}/manifests/{ref.tag}")
    return frozenset(found)


def _write(work: Path, python, bases, the_farm) -> list[tuple]:
    """The versions files with their generated trees (the release checks them), the builders
    file of `the_farm`; (versions file, templates, version) of each release, in order."""
    runs = []
    for family, templates, name in ((bases, farm_model.ROOT / "examples" / "buildpack-deps"
                                     / "templates", "buildpack-deps"),
                                    (python, farm_model.ROOT / "templates", "python")):
        directory = work / name
        directory.mkdir()
        shutil.copy(family.source, directory / "versions.yaml")
        tree.generate(versions.load(directory / "versions.yaml", templates), directory)
        runs += [(directory / "versions.yaml", templates, v.full, _bases(family, v))
                 for v in family.versions]
    builders = farm_model.release(python, bases, the_farm).builders
    lines = ["engines:"]
    for engine in builders.engines:
        lines += [f"  - name: {engine.name}", "    url: unix:///dev/null",
                  f"    platforms: [{engine.platforms[0].name}]"]
        if engine.os_version:
            lines.append(f"    os-version: {engine.os_version}")
    (work / "builders.yaml").write_text("\n".join(lines) + "\n")
    return runs


def _seed(registry: MemoryRegistry, python, bases) -> None:
    """Every base outside the two families, with the platforms the variants FROM it build."""
    wanted: dict[str, dict] = {}
    for family in (python, bases):
        for version in family.versions:
            for variant in version.variants:
                if ImageRef.parse(variant.base_image).familiar_repository not in (
                        "python", "buildpack-deps"):
                    wanted.setdefault(variant.base_image, {}).update(
                        {p.name: p for p in variant.platforms})
    for image, targets in wanted.items():
        ref = ImageRef.parse(image)
        registry.put_base(HOSTS[ref.registry], ref.repository, ref.tag, list(targets.values()))
