"""Registry credentials: from the environment, then from the Docker config.

Lookup order for a registry host (``127.0.0.1:5000``, ``docker.io``):

1. ``BUILDER_REGISTRY_<HOST>_USERNAME`` / ``BUILDER_REGISTRY_<HOST>_PASSWORD``, where ``<HOST>``
   is the host upper-cased with every character other than a letter or digit turned into ``_``
   (``127.0.0.1:5000`` → ``BUILDER_REGISTRY_127_0_0_1_5000_USERNAME``). For CI with several
   registries.
2. ``BUILDER_REGISTRY_USERNAME`` / ``BUILDER_REGISTRY_PASSWORD``: the CI pair. It goes to one
   registry only: ``BUILDER_REGISTRY_HOST`` when that is set, else the run's target (the host of
   ``--registry``), else none. Never to a base image's registry, a mirror or Docker Hub: a pull
   request that changes a ``from:`` line must not be able to collect the push secret.
3. The Docker config (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``), as the
   docker CLI reads it: ``credHelpers[host]``, then ``credsStore``, then ``auths[host].auth``.
   A helper runs as ``docker-credential-NAME get`` with the server on stdin. Docker Hub's key
   is ``https://index.docker.io/v1/``; ``auths`` keys may carry a scheme or a path.

Secrets never reach output, logs or exception messages: ``Credentials`` masks the password in
its repr, and errors name the source (variable, file, helper), never its content.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder.model.errors import BuilderError, InputError
from builder.model.reference import DOCKER_HUB, DOCKER_HUB_HOSTS
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # Docker Hub's key in the Docker config
_HELPER_TIMEOUT = 30  # seconds; a keychain prompt that never returns must not hang a release


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for error messages: "BUILDER_REGISTRY_USERNAME"

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', source={self.source!r})"


def credentials_for(registry_host: str, *, target: str | None = None) -> Credentials | None:
    """The credentials for `registry_host`, or None to go anonymous (see the module docstring).

    `target` is where the run pushes (``--registry``, a host with an optional path); the CI
    pair goes to it alone unless ``BUILDER_REGISTRY_HOST`` says otherwise.
    """
    host = _canonical_host(registry_host)
    return _from_environment(host, target) or _from_docker_config(host)


def env_prefix(registry_host: str) -> str:
    """``BUILDER_REGISTRY_127_0_0_1_5000``: the prefix of the host-scoped variables."""
    host = _canonical_host(registry_host)
    return "BUILDER_REGISTRY_" + re.sub(r"[^A-Za-z0-9]", "_", host).upper()


def _canonical_host(host: str) -> str:
    host = re.sub(r"^[a-z]+://", "", host.strip()).split("/")[0]
    return DOCKER_HUB if host in DOCKER_HUB_HOSTS else host


def _from_environment(host: str, target: str | None) -> Credentials | None:
    scoped = env_prefix(host)
    found = _pair(f"{scoped}_USERNAME", f"{scoped}_PASSWORD")
    if found:
        return found
    owner = os.environ.get("BUILDER_REGISTRY_HOST") or target
    # Checked even when the pair is not for this host: a half-set pair is a mistake to report.
    pair = _pair("BUILDER_REGISTRY_USERNAME", "BUILDER_REGISTRY_PASSWORD")
    if owner and _canonical_host(owner) == host:
        return pair
    return None


def _pair(user_var: str, password_var: str) -> Credentials | None:
    username, password = os.environ.get(user_var), os.environ.get(password_var)
    if username and password is not None:
        return Credentials(username, password, source=user_var)
    if username or password:
        missing = password_var if username else user_var
        raise InputError(f"{user_var} and {password_var} go together; set {missing} too",
                         field=missing)
    return None


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _from_docker_config(host: str) -> Credentials | None:
    path = docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the Docker config: {type(error).__name__}; "
                         "fix or remove it, or set BUILDER_REGISTRY_USERNAME/PASSWORD",
                         source=path) from None
    server = DOCKER_HUB_KEY if host == DOCKER_HUB else host
    helper = _lookup(config.get("credHelpers") or {}, host)
    if helper:
        return _from_helper(helper, server, path)
    if config.get("credsStore"):
        found = _from_helper(config["credsStore"], server, path)
        if found:
            return found
    entry = _lookup(config.get("auths") or {}, host)
    if entry:
        return _from_auth_entry(entry, host, path)
    return None


def _lookup(table: dict, host: str):
    """The value whose key names `host`, whatever scheme or path the key was written with."""
    for key, value in table.items():
        if _canonical_host(key) == host:
            return value
    return None


def _from_auth_entry(entry: dict, host: str, path: Path) -> Credentials | None:
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InputError(f"auths[{host!r}].auth is not base64 of user:password; "
                             f"run docker login {host} again", source=path) from None
        return Credentials(username, password, source=f"{path} auths")
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(entry["username"], entry["password"], source=f"{path} auths")
    return None


def _from_helper(name: str, server: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run([program, "get"], input=server, capture_output=True, text=True,
                              timeout=_HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise BuilderError(f"{path} names the credential helper {name!r} for {server}, but "
                           f"{program} is not on PATH; install it or edit the config") from None
    except subprocess.TimeoutExpired:
        raise BuilderError(f"{program} get {server} did not answer within {_HELPER_TIMEOUT} s; "
                           "unlock the keychain or set BUILDER_REGISTRY_USERNAME/PASSWORD") from None
    if done.returncode != 0:
        # Helpers report "credentials not found" on stdout and exit 1: anonymous access then.
        if "not found" in (done.stdout + done.stderr).lower():
            return None
        raise BuilderError(f"{program} get {server} failed (exit {done.returncode}); "
                           f"run `{program} get` by hand to see why")
    try:
        answer = json.loads(done.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise BuilderError(f"{program} get {server} did not print the JSON "
                           "{ServerURL, Username, Secret} a credential helper prints") from None
    if not secret:
        return None
    return Credentials(username, secret, source=program)
