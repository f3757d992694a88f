"""`mirror`: fill the source mirror and the base mirror, then serve them; `--stop` stops the
server.

One command for an air-gapped build farm: sources and keys (verified) into the mirror
directory, Debian's minbase and slim bases into the base-mirror registry, the HTTP/HKP server
started, and the builders-file lines that point builds at all of it printed. Everything
already there and still verifying is reused, so a second run takes seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from builder.commands import bases
from builder.mirror import debian, fill, localregistry, serve
from builder.model import mirrors as config
from builder.model import versions
from builder.model.errors import EXIT_OK
from builder.model.files import cache_dir
from builder.model.platforms import platform
from builder.model.report import Report, Status
from builder.options import (DEFAULT_BASE_PLATFORMS, DEFAULT_MIRROR_PORT, DEFAULT_MIRROR_SOURCE,
                             DEFAULT_REGISTRY_PORT, DEFAULT_SUITES, DEFAULT_VERSIONS)
from builder.registry.client import RegistryClient

DEFAULT_DIR = cache_dir() / "mirror"  # one per machine: every checkout builds through it


@dataclass(frozen=True)
class MirrorOptions:
    versions: str = DEFAULT_VERSIONS
    only: tuple[str, ...] = ()  # versions (full or series) to fill; () = every one with a sha256
    directory: Path = DEFAULT_DIR
    source: str = DEFAULT_MIRROR_SOURCE  # or an upstream-layout URL
    keys_url: str | None = None
    registry: str | None = None  # the base mirror; None: `invoke registry`'s, started
    suites: tuple[str, ...] = DEFAULT_SUITES
    platforms: tuple[str, ...] = DEFAULT_BASE_PLATFORMS
    make_bases: bool = True
    slim_only: bool = False  # debian:<suite>-slim only, not the minbase debian:<suite>
    port: int = DEFAULT_MIRROR_PORT
    start_server: bool = True
    stop: bool = False  # only stop the server started for `directory`


@dataclass(frozen=True)
class MirrorResult:
    directory: Path
    base_mirror: str | None = None  # the registry the bases went to
    url: str | None = None  # where the server serves the mirror
    stopped: bool = False
    exit_code: int = EXIT_OK
    accepted: tuple[fill.Accepted, ...] = ()  # the versions added, and the checks that passed

    def add_to(self, report: Report) -> None:
        report.stage("mirror", Status.OK, directory=str(self.directory),
                     base_mirror=self.base_mirror, url=self.url, stopped=self.stopped,
                     accepted=[{"version": a.version, "origin": a.origin, "chain": list(a.chain)}
                               for a in self.accepted])


def run(options: MirrorOptions, out: TextIO) -> MirrorResult:
    if options.stop:
        serve.stop(options.directory, options.port)
        return MirrorResult(options.directory, stopped=True)
    family = versions.load(options.versions)
    wanted, skipped = fill.wanted_versions(family, options.only)
    for full in skipped:
        print(f"{full}: skipped, {family.source} gives no sha256 to verify it by", file=out)
    directory = options.directory
    work = directory / ".work"
    provider = (debian.DebianArchive(work) if options.source == "debian"
                else fill.UpstreamURL(options.source, work, keys_url=options.keys_url))
    print(f"== sources into {directory}", file=out, flush=True)
    accepted = fill.fill(directory, wanted, provider, out)
    host = _bases(options, out) if options.make_bases else None
    url = None
    if options.start_server:
        url = serve.start(directory, options.port)
        print("\nbuilders-file lines for builds through these mirrors:", file=out)
        if host:
            print(f"base-mirror: {host}", file=out)
        print("mirrors:", file=out)
        for mirror in config.served(url):
            print(f"  - {{name: {mirror.name}, upstream: {mirror.upstream}, url: {mirror.url}}}",
                  file=out)
    return MirrorResult(directory, host, url, accepted=tuple(accepted))


def _bases(options: MirrorOptions, out: TextIO) -> str:
    """Debian's bases into the base mirror; its host."""
    import docker  # only here: filling sources alone needs no engine

    host = options.registry or localregistry.start(DEFAULT_REGISTRY_PORT)
    print(f"== Debian bases into {host}", file=out, flush=True)
    client = docker.from_env(timeout=600)
    mirror = RegistryClient(host)
    chosen = tuple(platform(name) for name in options.platforms)
    for suite in options.suites:
        for slim in (True,) if options.slim_only else (False, True):
            bases.ensure_debian(client, mirror, suite, slim, chosen, cache_dir() / "bases", out)
    return host
