"""Builders files (base mirror + engines) written for one test."""
from __future__ import annotations

from pathlib import Path

# An engine as (name, url, platforms), or as the YAML flow mapping of its whole entry.
EngineSpec = tuple[str, str, tuple[str, ...]] | str


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
