"""Which Docker engine builds which platform: the builders configuration.

A builders file (``--builders PATH``, else the file named by ``BUILDER_BUILDERS``) lists
ordinary Docker engines, the way the official images have one build node per architecture::

    base-mirror: 127.0.0.1:5000        # optional: where Docker Hub base images are pulled from
    engines:
      - name: local
        url: unix:///var/run/docker.sock
        platforms: [amd64, i386, arm32v7]
        concurrency: 2                 # builds at once on this engine (default 1)
      - name: arm-node
        url: tcp://10.0.0.7:2376       # TLS: ca, cert, key (paths relative to this file)
        tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}
        platforms: [arm64v8]
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

Platforms are official names or OCI forms (``linux/arm/v7``). When two engines list the same
platform, the first one listed gets the jobs. Environment overrides, for CI:
``BUILDER_BASE_MIRROR`` replaces ``base-mirror``; ``BUILDER_ENGINE_<NAME>_URL`` replaces the
url of engine NAME (upper-cased, non-alphanumerics as ``_``).

Without a builders file the local engine (``DOCKER_HOST`` or the default socket) builds every
Linux platform it can run: its own architecture (plus i386 on an x86_64 kernel with 32-bit
support) and every architecture with an enabled binfmt_misc handler that has the ``F`` flag
(the interpreter must be usable inside containers). Windows platforms then have no engine and
their jobs are skipped, saying so.
"""
from __future__ import annotations

import functools
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests

from . import yamldoc
from .errors import BuilderError, InputError
from .platforms import (PLATFORMS, Platform, from_oci, os_version_in_line,
                        platform as parse_platform)

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
_TOP_KEYS = {"engines": False, "base-mirror": False}
_ENGINE_KEYS = dict.fromkeys(("concurrency", "name", "os-version", "platforms", "tls", "url"),
                             False)
_REQUIRED_ENGINE_KEYS = ("name", "url", "platforms")
_TLS_KEYS = {"ca": False, "cert": False, "key": False}
_ENGINE_URL = (r"(unix|tcp|ssh|npipe)://.*", "an engine url; use unix://, tcp:// or ssh://")
_OS_VERSION = (r"\d+\.\d+\.\d+(\.\d+)?", "a Windows os.version like 10.0.17763")
_POSITIVE = (r"0*[1-9]\d*", "a positive whole number")
_REGISTRY_HOST = (r"[^/]+", "a registry host like 127.0.0.1:5000 (no scheme, no path)")

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

    def serves(self, wanted: Platform) -> bool:
        listed = any(p.name == wanted.name for p in self.platforms)
        if wanted.os == "windows":
            # A Windows image runs only on its own os.version line: 10.0.17763 on 10.0.17763.x.
            return (listed and wanted.os_version is not None
                    and os_version_in_line(self.os_version, wanted.os_version))
        return listed

    def client(self, timeout: int = 600):
        """A low-level docker APIClient for this engine; BuilderError when it cannot be reached."""
        import docker
        from docker.errors import DockerException

        kwargs = {"base_url": self.url, "version": "auto", "timeout": timeout}
        if self.url.startswith("ssh://"):
            # The ssh command and its config; the SDK still imports paramiko (docker[ssh]).
            kwargs["use_ssh_client"] = True
        if self.tls:
            kwargs["tls"] = docker.tls.TLSConfig(
                client_cert=(self.tls.cert, self.tls.key) if self.tls.cert else None,
                ca_cert=self.tls.ca, verify=self.tls.ca or True)
        try:
            return _api_client_class()(**kwargs)
        except (DockerException, requests.RequestException) as error:
            raise BuilderError(self._connect_problem(short_error(error))) from None

    def _connect_problem(self, text: str) -> str:
        """One actionable line for a failed connection: TLS and ssh setup problems by name."""
        where = f"engine {self.name} ({self.url})"
        if "Install paramiko" in text:
            return (f"{where}: ssh:// engines need the docker SDK's ssh extra (paramiko), although "
                    "the connection is made by the ssh command: pip install 'docker[ssh]'")
        if self.url.startswith("ssh://"):
            parsed = urllib.parse.urlsplit(self.url)
            command = " ".join(["ssh", *(["-l", parsed.username] if parsed.username else []),
                                *(["-p", str(parsed.port)] if parsed.port else []),
                                parsed.hostname or "", "docker", "version"])
            return (f"{where}: no docker API over ssh ({text}); ssh's own message, if any, is "
                    f"above. `{command}` must work without a prompt: the key in ssh-agent or "
                    "~/.ssh/config, the host key in known_hosts, `docker` on the remote PATH")
        if "Client sent an HTTP request to an HTTPS server" in text:
            return (f"{where} speaks TLS, and its entry in the builders file has no `tls:`; "
                    "add tls: {ca: …, cert: …, key: …}")
        if "CERTIFICATE_VERIFY_FAILED" in text:
            detail = re.search(r"certificate verify failed: ([^'\"()]+)", text)
            trusted = (f"tls.ca ({self.tls.ca})" if self.tls and self.tls.ca
                       else "the system's CAs (its entry has no tls.ca)")
            return (f"{where}: its certificate is not signed by {trusted}"
                    f"{' (' + detail.group(1).strip() + ')' if detail else ''}; "
                    "set tls.ca to the CA that signed the engine's certificate")
        rejected = re.search(r"ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED|"
                             r"HANDSHAKE_FAILURE|CERTIFICATE_UNKNOWN)", text)
        if self.tls is not None and (rejected or "EOF occurred in violation of protocol" in text):
            sent = (f"the client certificate {self.tls.cert}" if self.tls.cert
                    else "no client certificate (tls.cert and tls.key are not set)")
            how = rejected.group(0).lower().replace("_", " ") if rejected else \
                "it closed the connection"
            return (f"{where} refused the TLS handshake with {sent} ({how}): it takes only "
                    "client certificates signed by its own CA (dockerd --tlscacert); "
                    "set tls.cert and tls.key to such a pair")
        return f"{where} is unreachable: {text}; start it or fix its url"


@functools.cache
def _api_client_class():
    import docker

    class APIClient(docker.APIClient):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace Session.verify, which
            # holds the engine's own CA (tls.ca): every request would then check the engine's
            # certificate against the wrong CAs. A request that names no CA keeps the engine's.
            if verify is None and isinstance(self.verify, str):
                verify = self.verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    return APIClient


@dataclass(frozen=True)
class Builders:
    engines: tuple[Engine, ...]
    base_mirror: str | None = None
    source: str | None = None  # the builders file; None: the detected local engine
    problem: str | None = None  # why no engine could be set up (dry-run shows it)

    def engine_for(self, wanted: Platform) -> Engine | None:
        for engine in self.engines:
            if engine.serves(wanted):
                return engine
        return None

    def no_engine_reason(self, wanted: Platform) -> str:
        shown = wanted.name + (f" ({wanted.os_version})" if wanted.os_version else "")
        if self.problem:
            return f"no engine for {shown}: {self.problem}"
        where = f"add one to {self.source}" if self.source \
            else "add one in a builders file (--builders)"
        return f"no engine serves {shown}: {where}"


def load(path: str | Path | None = None, *, env: dict | None = None,
         require_engine: bool = True) -> Builders:
    """The builders: from `path`, else from $BUILDER_BUILDERS, else the detected local engine.

    With `require_engine` False (dry-run), an unreachable local engine is recorded in
    `Builders.problem` instead of raising.
    """
    env = os.environ if env is None else env
    path = path or env.get("BUILDER_BUILDERS")
    mirror = env.get("BUILDER_BASE_MIRROR") or None
    if path:
        builders = parse(Path(path), env=env)
        return Builders(builders.engines, mirror or builders.base_mirror, builders.source)
    try:
        return Builders((detect_local(),), mirror)
    except BuilderError as error:
        if require_engine:
            raise
        return Builders((), mirror, problem=str(error))


def parse(path: Path, *, env: dict | None = None) -> Builders:
    """Read a builders file; every mistake names the file, the line and the field."""
    env = os.environ if env is None else env
    doc = yamldoc.load(path, syntax_error="not valid YAML")
    if doc.root is None:
        raise InputError("empty builders file; it needs an `engines:` list", source=path)
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
    return Builders(engines, mirror, str(path))


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
    tls = None
    if "tls" in fields:
        paths = {}
        for key, value in doc.mapping(fields["tls"], where + ("tls",), _TLS_KEYS).items():
            file = base / doc.text(value, where + ("tls", key))
            if not file.is_file():
                raise doc.error(where + ("tls", key), f"no such file: {file}")
            paths[key] = str(file)
        if ("cert" in paths) != ("key" in paths):
            raise doc.error(where + ("tls",), "cert and key go together")
        tls = TLS(paths.get("ca"), paths.get("cert"), paths.get("key"))
    return Engine(name, url, tuple(platforms), concurrency, tls, os_version)


def detect_local() -> Engine:
    """The local engine and the Linux platforms it can build (see the module docstring)."""
    import docker
    from docker.errors import DockerException

    url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        with docker.APIClient(base_url=url, version="auto", timeout=10) as client:
            info = client.info()
    except (DockerException, requests.RequestException) as error:
        raise BuilderError(f"cannot reach the local Docker engine at {url}: {short_error(error)}; "
                           "start it, set DOCKER_HOST, or give a builders file "
                           "(--builders)") from None
    if info.get("OSType") != "linux":
        raise BuilderError(f"the local engine at {url} runs {info.get('OSType')} containers; "
                           "give a builders file (--builders) that names its platforms")
    try:
        native = from_oci("linux", info.get("Architecture", "")).architecture
    except InputError:
        native = None  # a kernel outside our platform table: only its emulated platforms count
    architectures = runnable_architectures(native, local=url.startswith("unix://"))
    platforms = tuple(p for p in PLATFORMS.values()
                      if p.os == "linux" and p.architecture in architectures)
    return Engine("local", url, platforms)


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


def short_error(error: Exception) -> str:
    """The last line of a docker-py error: its chained messages repeat each other."""
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
