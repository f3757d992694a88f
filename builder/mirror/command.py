"""`invoke mirror`: fill the source mirror and the base mirror, then serve them.

One command for an air-gapped build farm: sources and keys (verified) into the mirror
directory, Debian's minbase and slim bases into the base-mirror registry, the HTTP/HKP server
started, and the builders-file lines that point builds at all of it printed. Everything
already there and still verifying is reused, so a second run takes seconds.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.mirror import bases
from builder.mirror import localregistry
from builder.model import versions
from builder.model.files import cache_dir
from builder.model.platforms import platform
from builder.registry.client import RegistryClient
from builder.mirror import config, fill, serve

DEFAULT_DIR = cache_dir() / "mirror"  # one per machine: every checkout builds through it
DEFAULT_PLATFORMS = ("amd64", "i386")  # native here; others run mmdebstrap under QEMU


@dataclass(frozen=True)
class MirrorOptions:
    versions: str = "versions.yaml"
    only: tuple[str, ...] = ()  # versions (full or series) to fill; () = every one with a sha256
    directory: Path = DEFAULT_DIR
    source: str = "debian"  # or an upstream-layout URL
    keys_url: str | None = None
    registry: str | None = None  # the base mirror; None: `invoke registry`'s, started
    suites: tuple[str, ...] = bases.DEBIAN_SUITES
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    make_bases: bool = True
    slim_only: bool = False  # debian:<suite>-slim only, not the minbase debian:<suite>
    port: int = serve.DEFAULT_PORT
    start_server: bool = True


def run(options: MirrorOptions, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    family = versions.load(options.versions)
    wanted, skipped = fill.wanted_versions(family, options.only)
    for full in skipped:
        print(f"{full}: skipped, {family.source} gives no sha256 to verify it by", file=out)
    directory = options.directory
    work = directory / ".work"
    provider = (fill.DebianArchive(work) if options.source == "debian"
                else fill.UpstreamURL(options.source, work, keys_url=options.keys_url))
    print(f"== sources into {directory}", file=out, flush=True)
    fill.fill(directory, wanted, provider, out)

    host = None
    if options.make_bases:
        import docker  # only here: filling sources alone needs no engine

        host = options.registry or localregistry.start()
        print(f"== Debian bases into {host}", file=out, flush=True)
        client = docker.from_env(timeout=600)
        mirror = RegistryClient(host)
        chosen = tuple(platform(name) for name in options.platforms)
        for suite in options.suites:
            for slim in (True,) if options.slim_only else (False, True):
                bases.ensure_debian(client, mirror, suite, slim, chosen, cache_dir() / "bases",
                                    out)

    if options.start_server:
        url = serve.start(directory, options.port)
        print("\nbuilders-file lines for builds through these mirrors:", file=out)
        if host:
            print(f"base-mirror: {host}", file=out)
        print("mirrors:", file=out)
        for mirror in config.served(url):
            print(f"  - {{name: {mirror.name}, upstream: {mirror.upstream}, url: {mirror.url}}}",
                  file=out)
    return 0
