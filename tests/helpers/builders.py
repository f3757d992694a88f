"""Builders files (base mirror + engines) written for one test, and the engine of each kind the
build-path tests run on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker

# An engine as (name, url, platforms), or as the YAML flow mapping of its whole entry.
EngineSpec = tuple[str, str, tuple[str, ...]] | str

LOCAL_URL = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class KindEngine:
    """The engine of one kind: `classic`, the host's Docker 20.10 on its graphdriver store, or
    `modern`, Docker 28.5 on the containerd image store (testbed/modern.py), both through the
    classic builder. `wrong`: the platforms its classic builder builds wrongly, which its tests
    leave out (on the containerd store it drops the arm variant, so arm/v5 and arm/v6 come out
    as arm, which reads as arm/v7)."""
    kind: str
    name: str  # in the builders files the tests write
    url: str
    client: docker.DockerClient
    wrong: frozenset[str] = frozenset()

    def platforms(self, *names: str) -> tuple[str, ...]:
        """`names` without those this engine builds wrongly."""
        return tuple(name for name in names if name not in self.wrong)

    def spec(self, *platforms: str) -> EngineSpec:
        """Its builders-file entry for `platforms` (those it builds wrongly left out)."""
        return self.name, self.url, self.platforms(*platforms)


def write_builders(path: Path, mirror_host: str, *engines: EngineSpec) -> Path:
    lines = [f"base-mirror: {mirror_host}", "engines:"]
    for engine in engines:
        if isinstance(engine, str):
            lines.append(f"  - {engine}")
        else:
            name, url, platforms = engine
            lines += [f"  - name: {name}", f"    url: {url}", f"    platforms: [{', '.join(platforms)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path
