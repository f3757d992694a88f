"""Opening Docker clients: a connection to each engine of the builders, and the local engine found.

The builders file and its values are `builder.model.builders`. Without a builders file the local
engine (``DOCKER_HOST`` or the default socket) builds every Linux platform it can run: its own
architecture (plus i386 on an x86_64 kernel with 32-bit support) and every architecture with an
enabled binfmt_misc handler that has the ``F`` flag (the interpreter must be usable inside
containers). Windows platforms then have no engine and their jobs are skipped, saying so.
"""
from __future__ import annotations

import dataclasses

import functools
import os
import re
import sys
import urllib.parse
from pathlib import Path

import requests

from builder.model.builders import (Builders, Engine, base_mirror_from, parse,
                                    runnable_architectures)
from builder.model.errors import BuilderError, InputError
from builder.model.platforms import PLATFORMS, from_oci
from builder.registry.session import EnvironmentOnce


def connect(engine: Engine, timeout: int = 600):
    """A low-level docker APIClient for `engine`; BuilderError when it cannot be reached, or
    may not be: plain tcp:// without `tls: false` (builders.Engine.transport_problem)."""
    import docker
    from docker.errors import DockerException

    if engine.transport_problem:
        raise InputError(f"engine {engine.name} ({engine.url}): {engine.transport_problem}")
    if engine.plain and engine.url.startswith("tcp://"):
        _warn_plain(engine.name, engine.url)

    kwargs = {"base_url": engine.url, "version": "auto", "timeout": timeout}
    if engine.over_ssh:
        # The ssh command and its config; the SDK still imports paramiko (docker[ssh]).
        kwargs["use_ssh_client"] = True
    if engine.tls:
        kwargs["tls"] = docker.tls.TLSConfig(
            client_cert=(engine.tls.cert, engine.tls.key) if engine.tls.cert else None,
            ca_cert=engine.tls.ca, verify=engine.tls.ca or True)
    try:
        return _api_client_class()(**kwargs)
    except (DockerException, requests.RequestException) as error:
        raise BuilderError(_connect_problem(engine, short_error(error))) from None


def _connect_problem(engine: Engine, text: str) -> str:
    """One actionable line for a failed connection: TLS and ssh setup problems by name."""
    where = f"engine {engine.name} ({engine.url})"
    if "Install paramiko" in text:
        return (f"{where}: ssh:// engines need the docker SDK's ssh extra (paramiko), although "
                "the connection is made by the ssh command: pip install 'docker[ssh]'")
    if engine.over_ssh:
        parsed = urllib.parse.urlsplit(engine.url)
        command = " ".join(["ssh", *(["-l", parsed.username] if parsed.username else []),
                            *(["-p", str(parsed.port)] if parsed.port else []),
                            parsed.hostname or "", "docker", "version"])
        return (f"{where}: no docker API over ssh ({text}); ssh's own message, if any, is "
                f"above. `{command}` must work without a prompt: the key in ssh-agent or "
                "~/.ssh/config, the host key in known_hosts, `docker` on the remote PATH")
    if "Client sent an HTTP request to an HTTPS server" in text:
        return (f"{where} speaks TLS, and its entry in the builders file says `tls: false`; "
                "give tls: {ca: …, cert: …, key: …} instead")
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = re.search(r"certificate verify failed: ([^'\"()]+)", text)
        trusted = (f"tls.ca ({engine.tls.ca})" if engine.tls and engine.tls.ca
                   else "the system's CAs (its entry has no tls.ca)")
        return (f"{where}: its certificate is not signed by {trusted}"
                f"{' (' + detail.group(1).strip() + ')' if detail else ''}; "
                "set tls.ca to the CA that signed the engine's certificate")
    rejected = re.search(r"ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED|"
                         r"HANDSHAKE_FAILURE|CERTIFICATE_UNKNOWN)", text)
    if engine.tls is not None and (rejected or "EOF occurred in violation of protocol" in text):
        sent = (f"the client certificate {engine.tls.cert}" if engine.tls.cert
                else "no client certificate (tls.cert and tls.key are not set)")
        how = rejected.group(0).lower().replace("_", " ") if rejected else \
            "it closed the connection"
        return (f"{where} refused the TLS handshake with {sent} ({how}): it takes only "
                "client certificates signed by its own CA (dockerd --tlscacert); "
                "set tls.cert and tls.key to such a pair")
    return f"{where} is unreachable: {text}; start it or fix its url"


@functools.cache  # once per engine and run: the warning, not every job's connection
def _warn_plain(name: str, url: str) -> None:
    print(f"warning: engine {name} ({url}) is reached without TLS (`tls: false` in the builders "
          "file): anyone on that network can run containers on it and read the push "
          "credentials sent to it", file=sys.stderr, flush=True)


def engine_version(api) -> dict:
    """The engine's answer to /version (Version, ApiVersion, Arch, …): the one it gave as the
    client connected, else asked now."""
    return getattr(api, "engine_version", None) or api.version()


@functools.cache
def _api_client_class():
    import docker

    class APIClient(EnvironmentOnce, docker.APIClient):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace Session.verify, which
            # holds the engine's own CA (tls.ca): every request would then check the engine's
            # certificate against the wrong CAs. A request that names no CA keeps the engine's.
            if verify is None and isinstance(self.verify, str):
                verify = self.verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

        def version(self, api_version=True):
            # The SDK asks it as it connects, and keeps only the API version: the rest is
            # kept here for `engine_version`.
            self.engine_version = super().version(api_version)
            return self.engine_version

        def _set_auth_headers(self, headers):
            # The SDK would send a build every credential of the Docker config (running each
            # credential helper for it). A build pulls nothing itself: its bases are pulled
            # first, each with its own registry's credentials (engineapi.auth_config).
            pass

    return APIClient


def load(path: str | Path | None = None, *, env: dict | None = None,
         require_engine: bool = True) -> Builders:
    """The builders: from `path`, else from $BUILDER_BUILDERS, else the detected local engine.

    With `require_engine` False (dry-run), an unreachable local engine is recorded in
    `Builders.problem` instead of raising.
    """
    env = os.environ if env is None else env
    path = path or env.get("BUILDER_BUILDERS")
    mirror = base_mirror_from(env)
    if path:
        builders = parse(Path(path), env=env)
        return dataclasses.replace(builders, base_mirror=mirror or builders.base_mirror)
    try:
        return Builders((detect_local(),), mirror)
    except BuilderError as error:
        if require_engine:
            raise
        return Builders((), mirror, problem=str(error))


def detect_local() -> Engine:
    """The local engine and the Linux platforms it can build (see the module docstring)."""
    import docker
    from docker.errors import DockerException

    url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if url.startswith("tcp://"):
        # The local engine is reached as DOCKER_HOST says, with no TLS settings of ours.
        raise InputError(f"DOCKER_HOST is {url}: a tcp:// engine is used only from a builders "
                         "file (--builders), with its tls: {ca: …, cert: …, key: …}, or tls: false")
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


def short_error(error: Exception) -> str:
    """The last line of a docker-py error: its chained messages repeat each other."""
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
