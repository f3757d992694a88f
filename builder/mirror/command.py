"""`invoke mirror`: fill the source mirror and the base mirror, then serve them.

One command for an air-gapped build farm: sources and keys (verified) into the mirror
directory, Debian's minbase and slim bases into the base-mirror registry, the HTTP/HKP server
started, and the builders-file lines that point builds at all of it printed. Everything
already there and still verifying is reused, so a second run takes seconds.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .. import bases, localregistry, versions
from ..platforms import platform
from . import config, fill, serve

DEFAULT_DIR = Path(".cache/mirror")
DEFAULT_PLATFORMS = ("amd64", "i386")  # native here; others run mmdebstrap under QEMU


def run(versions_path: str, *, only: tuple[str, ...] = (), directory: Path = DEFAULT_DIR,
        source: str = "debian", keys_url: str | None = None, registry: str | None = None,
        suites: tuple[str, ...] = bases.DEBIAN_SUITES, platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
        make_bases: bool = True, port: int = serve.DEFAULT_PORT, start_server: bool = True,
        out: TextIO | None = None) -> int:
    out = out or sys.stdout
    family = versions.load(versions_path)
    wanted, skipped = fill.wanted_versions(family, only)
    for full in skipped:
        print(f"{full}: skipped, {family.source} gives no sha256 to verify it by", file=out)
    work = directory / ".work"
    provider = (fill.DebianArchive(work) if source == "debian"
                else fill.UpstreamURL(source, work, keys_url=keys_url))
    print(f"== sources into {directory}", file=out, flush=True)
    fill.fill(directory, wanted, provider, out)

    host = None
    if make_bases:
        import docker  # only here: filling sources alone needs no engine

        host = registry or localregistry.start()
        print(f"== Debian bases into {host}", file=out, flush=True)
        client = docker.from_env(timeout=600)
        chosen = tuple(platform(name) for name in platforms)
        for suite in suites:
            for slim in (False, True):
                bases.ensure_debian(client, bases.BaseMirror(host), suite, slim, chosen,
                                    directory / ".work" / "bases", out)

    if start_server:
        url = serve.start(directory, port)
        print("\nbuilders-file lines for builds through these mirrors:", file=out)
        if host:
            print(f"base-mirror: {host}", file=out)
        print("mirrors:", file=out)
        for mirror in config.served(url):
            print(f"  - {{name: {mirror.name}, upstream: {mirror.upstream}, url: {mirror.url}}}",
                  file=out)
    return 0
