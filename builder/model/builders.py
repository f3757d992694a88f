"""The builders file as values: which engine builds which platform, and what this kernel runs.

Pure: reads YAML and /proc, imports no Docker client (`builder.farm.engines` opens the clients).

A builders file (``--builders PATH``, else the file named by ``BUILDER_BUILDERS``) lists
ordinary Docker engines, the way the official images have one build node per architecture::

    base-mirror: 127.0.0.1:5000        # optional: where Docker Hub base images are pulled from
    engines:
      - name: local
        url: unix:///var/run/docker.sock
        platforms: [amd64, i386, arm32v7]
        concurrency: 2                 # builds at once on this engine (default 1)
        push-concurrency: 1            # pushes at once (default: no cap below concurrency)
      - name: arm-node
        url: tcp://10.0.0.7:2376       # TLS: ca, cert, key (paths relative to this file)
        tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}
        platforms: [arm64v8]
      - name: lab
        url: tcp://10.0.0.8:2375       # no TLS: refused unless said so, then warned about
        tls: false
        platforms: [s390x]
      - name: modern
        url: unix:///run/docker.sock   # Docker 28/29 on the containerd image store
        builder: buildkit              # classic | buildkit (docker buildx build); see below
        platforms: [arm32v5, arm32v6]
      - name: win1809
        url: ssh://builder@win1809     # uses the ssh command and its configuration
        platforms: [windows-amd64]
        os-version: 10.0.17763         # Windows: the os.version line this engine runs

An ssh:// engine is reached the way ``docker -H ssh://…`` reaches it: the ``ssh`` command runs
``docker system dial-stdio`` on the host, so ``ssh [-l USER] [-p PORT] HOST docker version`` must
work from here without a prompt (BatchMode): the key in ssh-agent or named in ``~/.ssh/config``
(OpenSSH reads the home of the passwd entry, not $HOME), the host key in ``known_hosts``, and
``docker`` on the PATH of the remote session, talking to the engine (its DOCKER_HOST or the
default socket). The docker SDK needs its ssh extra (paramiko, ``docker[ssh]``) installed even
though it shells out to ``ssh``.

``builder`` picks how an engine builds a Linux job: ``classic`` (the engine's build API, the
classic builder) or ``buildkit`` (``docker buildx build`` against that engine, with buildx found
on PATH as ``docker-buildx`` or as a docker CLI plugin: `builder.farm.buildkit`). Left out, the
health probe decides per platform from the engine's image store (`builder.farm.pools.backend`):
classic on the graphdriver store; on the containerd store classic too, except for the platforms
its classic builder builds wrongly (an arm variant other than v7 loses its variant there), which
go through BuildKit. Windows engines build with the classic builder only.

Platforms are official names or OCI forms (``linux/arm/v7``). The engines listing a platform
are its pool: each job goes, when it is ready, to the engine of its pool with a free slot and
the least work (`builder.farm.pools`), after a health probe has confirmed what each engine really
runs (`builder.farm.health`). Environment overrides, for CI:
``BUILDER_BASE_MIRROR`` replaces ``base-mirror``; ``BUILDER_ENGINE_<NAME>_URL`` replaces the
url of engine NAME (upper-cased, non-alphanumerics as ``_``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from builder.model import yamldoc
from builder.model import mirrors as mirror_config
from builder.model.mirrors import Mirror
from builder.model.errors import InputError
from builder.model.platforms import Platform, os_version_in_line, platform as parse_platform
from builder.model.reference import DOMAIN_PATTERN, HOST_MEANING, registry_problem

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
_TOP_KEYS = {"engines": False, "base-mirror": False, "mirrors": False}
_ENGINE_KEYS = dict.fromkeys(("builder", "concurrency", "name", "os-version", "platforms", "push-concurrency",
                              "tls", "url"), False)
_REQUIRED_ENGINE_KEYS = ("name", "url", "platforms")
_TLS_KEYS = {"ca": False, "cert": False, "key": False}
_ENGINE_URL = (r"(unix|tcp|ssh|npipe)://.*", "an engine url; use unix://, tcp:// or ssh://")
_OS_VERSION = (r"\d+\.\d+\.\d+(\.\d+)?", "a Windows os.version like 10.0.17763")
_POSITIVE = (r"0*[1-9]\d*", "a positive whole number")
CLASSIC, BUILDKIT = "classic", "buildkit"  # an engine's builders
_BUILDER = (r"classic|buildkit", "classic or buildkit")
_REGISTRY_HOST = (DOMAIN_PATTERN, HOST_MEANING)

# ELF (e_machine, 64-bit, little-endian) → OCI architecture, to read binfmt_misc magic.
_ELF_MACHINES = {
    (0x03, False, True): "386",
    (0x3E, True, True): "amd64",
    (0x28, False, True): "arm",
    (0xB7, True, True): "arm64",
    (0x08, True, True): "mips64le",
    (0x15, True, True): "ppc64le",
    (0xF3, True, True): "riscv64",
    (0x16, True, False): "s390x",
}


@dataclass(frozen=True)
class TLS:
    ca: str | None
    cert: str | None
    key: str | None


@dataclass(frozen=True)
class Engine:
    name: str
    url: str
    platforms: tuple[Platform, ...]
    concurrency: int = 1
    tls: TLS | None = None
    os_version: str | None = None  # Windows engines: "10.0.17763"
    plain: bool = False  # `tls: false`: a tcp:// engine reached without TLS, on purpose
    push_concurrency: int | None = None  # pushes at once; None: as many as its builds
    builder: str | None = None  # CLASSIC or BUILDKIT; None: chosen by its store, per platform

    @property
    def pushes(self) -> int:
        return min(self.push_concurrency or self.concurrency, self.concurrency)

    @property
    def over_ssh(self) -> bool:
        """Reached through the ssh command: each connection to it is an ssh process."""
        return self.url.startswith("ssh://")

    @property
    def transport_problem(self) -> str | None:
        """Why the url may not be used as it is: plain tcp:// without `tls: false`."""
        if self.url.startswith("tcp://") and self.tls is None and not self.plain:
            return ("a tcp:// engine without TLS lets anyone who reaches its port run containers "
                    "as root there, and read the registry credentials sent with each push; add "
                    "tls: {ca: …, cert: …, key: …}, or `tls: false` to accept that")
        return None

    def serves(self, wanted: Platform) -> bool:
        listed = any(p.name == wanted.name for p in self.platforms)
        if wanted.os == "windows":
            # A Windows image runs only on its own os.version line: 10.0.17763 on 10.0.17763.x.
            return (listed and wanted.os_version is not None
                    and os_version_in_line(self.os_version, wanted.os_version))
        return listed


@dataclass(frozen=True)
class Builders:
    engines: tuple[Engine, ...]
    base_mirror: str | None = None
    source: str | None = None  # the builders file; None: the detected local engine
    problem: str | None = None  # why no engine could be set up (dry-run shows it)
    mirrors: tuple[Mirror, ...] = ()  # upstream URL prefixes → mirror URLs, for offline builds

    def pool_for(self, wanted: Platform) -> tuple[Engine, ...]:
        """The engines that list `wanted`, in the file's order."""
        return tuple(engine for engine in self.engines if engine.serves(wanted))

    def no_engine_reason(self, wanted: Platform) -> str:
        shown = wanted.name + (f" ({wanted.os_version})" if wanted.os_version else "")
        if self.problem:
            return f"no engine for {shown}: {self.problem}"
        where = f"add one to {self.source}" if self.source \
            else "add one in a builders file (--builders)"
        return f"no engine serves {shown}: {where}"


def parse(path: Path, *, env: dict | None = None) -> Builders:
    """Read a builders file; every mistake names the file, the line and the field."""
    env = os.environ if env is None else env
    doc = yamldoc.load(path, syntax_error="not valid YAML")
    if doc.root is None:
        raise InputError("empty builders file; it needs an `engines:` list", source=path, line=1)
    top = doc.mapping(doc.root, (), _TOP_KEYS)
    mirror = None
    if "base-mirror" in top:
        mirror = doc.text(top["base-mirror"], ("base-mirror",), _REGISTRY_HOST)
    if "engines" not in top:
        raise doc.error(("engines",), "missing `engines:` (a list of engines)")
    engines = tuple(_engine(doc, item, ("engines", i), base=path.parent, env=env)
                    for i, item in enumerate(doc.sequence(top["engines"], ("engines",))))
    names = [e.name for e in engines]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise doc.error(("engines", i, "name"), f"engine name {name!r} is used twice")
    mirrors = mirror_config.parse(doc, top["mirrors"], ("mirrors",), env) if "mirrors" in top else ()
    return Builders(engines, mirror, str(path), mirrors=mirrors)


def _engine(doc: yamldoc.Doc, entry, where: tuple, *, base: Path, env) -> Engine:
    fields = doc.mapping(entry, where, _ENGINE_KEYS)
    # Required keys are checked here, not by doc.mapping, so that the error names the
    # missing field's own path (engines[0].url), as builders-file errors always have.
    for key in _REQUIRED_ENGINE_KEYS:
        if key not in fields:
            raise doc.error(where + (key,), f"missing `{key}`")
    name = doc.text(fields["name"], where + ("name",))
    url = doc.text(env.get(f"BUILDER_ENGINE_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_URL")
                   or fields["url"], where + ("url",), _ENGINE_URL)
    os_version = None
    if "os-version" in fields:
        os_version = doc.text(fields["os-version"], where + ("os-version",), _OS_VERSION)
    platforms = []
    for i, item in enumerate(doc.sequence(fields["platforms"], where + ("platforms",))):
        at = where + ("platforms", i)
        text = doc.text(item, at)
        try:
            found = parse_platform(text)
        except InputError as error:
            raise doc.error(at, error.message) from None
        if found.os == "windows" and os_version is None:
            raise doc.error(at, "a Windows platform needs the engine's `os-version`")
        platforms.append(found.with_os_version(os_version) if found.os == "windows" else found)
    concurrency = 1
    if "concurrency" in fields:
        concurrency = int(doc.text(fields["concurrency"], where + ("concurrency",), _POSITIVE))
    push_concurrency = None
    if "push-concurrency" in fields:
        push_concurrency = int(doc.text(fields["push-concurrency"], where + ("push-concurrency",),
                                        _POSITIVE))
    tls, plain = None, False
    if fields.get("tls") == "false":
        plain = True
    elif "tls" in fields:
        if not isinstance(fields["tls"], dict):
            raise doc.error(where + ("tls",), "expected {ca: …, cert: …, key: …}, or false")
        paths = {}
        for key, value in doc.mapping(fields["tls"], where + ("tls",), _TLS_KEYS).items():
            file = base / doc.text(value, where + ("tls", key))
            if not file.is_file():
                raise doc.error(where + ("tls", key), f"no such file: {file}")
            paths[key] = str(file)
        if ("cert" in paths) != ("key" in paths):
            raise doc.error(where + ("tls",), "cert and key go together")
        tls = TLS(paths.get("ca"), paths.get("cert"), paths.get("key"))
    builder = None
    if "builder" in fields:
        builder = doc.text(fields["builder"], where + ("builder",), _BUILDER)
        if builder == BUILDKIT and any(p.os == "windows" for p in platforms):
            raise doc.error(where + ("builder",), "Windows images build with the classic builder "
                            "only; give the Windows platforms an engine of their own")
    engine = Engine(name, url, tuple(platforms), concurrency, tls, os_version, plain=plain,
                    push_concurrency=push_concurrency, builder=builder)
    if engine.transport_problem:
        raise doc.error(where + ("url",), engine.transport_problem)
    return engine


def runnable_architectures(native: str | None, *, local: bool = True,
                           binfmt_dir: Path = BINFMT_DIR) -> set[str]:
    """OCI architectures the kernel runs: native, compat (i386 on x86_64), binfmt handlers.

    A remote engine's kernel cannot be inspected from here, so only its native
    architecture counts; list its platforms in a builders file to use emulation there.
    """
    found = {native} if native else set()
    if not local:
        return found
    if native == "amd64" and Path("/proc/sys/abi/vsyscall32").exists():
        found.add("386")  # the kernel has IA32 emulation, so i386 binaries run natively
    found |= binfmt_architectures(binfmt_dir)
    return found


def binfmt_architectures(binfmt_dir: Path = BINFMT_DIR) -> set[str]:
    """Architectures with an enabled ELF binfmt_misc handler usable from containers (flag F)."""
    try:
        if (binfmt_dir / "status").read_text().strip() != "enabled":
            return set()
        entries = [p for p in binfmt_dir.iterdir() if p.name not in ("status", "register")]
    except OSError:
        return set()
    found = set()
    for entry in entries:
        try:
            lines = entry.read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(" ", 1) if " " in line else (line, "") for line in lines)
        flags = fields.get("flags:", "")
        magic = fields.get("magic", "")
        if not lines or lines[0] != "enabled" or "F" not in flags or fields.get("offset") != "0":
            continue
        architecture = _elf_architecture(magic)
        if architecture:
            found.add(architecture)
    return found


def _elf_architecture(magic: str) -> str | None:
    try:
        raw = bytes.fromhex(magic)
    except ValueError:
        return None
    if len(raw) < 20 or raw[:4] != b"\x7fELF":
        return None
    is_64, little = raw[4] == 2, raw[5] == 1
    machine = int.from_bytes(raw[18:20], "little" if little else "big")
    return _ELF_MACHINES.get((machine, is_64, little))


def base_mirror_from(env: dict) -> str | None:
    """``BUILDER_BASE_MIRROR``, checked as a registry host: it goes into every FROM line."""
    value = env.get("BUILDER_BASE_MIRROR") or None
    problem = value and registry_problem(value, path=False)
    if problem:
        raise InputError(problem, field="BUILDER_BASE_MIRROR")
    return value
