"""Debian's Distribution 2.8 (`docker-registry serve`) on a free loopback port."""
from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from builder.mirror import localregistry

from . import procs
from .pki import make_server_pki


@dataclass(frozen=True)
class Registry:
    host: str  # "127.0.0.1:PORT": what image references start with
    url: str  # "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT"
    storage: Path
    username: str | None = None
    password: str | None = None
    ca_bundle: Path | None = None  # the CA PEM that signed the server certificate
    server: procs.Server | None = field(default=None, repr=False, compare=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    @property
    def verify(self) -> str | bool:
        """For requests' `verify=`; pass it on every call, since REQUESTS_CA_BUNDLE overrides Session.verify."""
        return str(self.ca_bundle) if self.ca_bundle else True

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.get(self.url + path, verify=self.verify, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _htpasswd(path: Path, username: str, password: str) -> None:
    htpasswd = shutil.which("htpasswd")
    if not htpasswd:
        raise procs.StartError("htpasswd not found: install apache2-utils (scripts/setup does)")
    # Distribution accepts only bcrypt entries.
    subprocess.run([htpasswd, "-Bbc", str(path), username, password], check=True, capture_output=True)


def start_registry(workdir: Path, *, storage: Path | None = None, tls: bool = False,
                   basic_auth: bool = False, name: str = "registry",
                   extra: dict | None = None, public_url: str | None = None) -> Registry:
    """A registry storing in `storage` (default: workdir/storage), ready when /v2/ answers.

    `public_url` is the base of the URLs it hands out (upload Locations): another host's, to
    see where a client follows them."""
    binary = shutil.which("docker-registry")
    if not binary:
        raise procs.StartError("docker-registry not found: install it (scripts/setup does)")
    workdir.mkdir(parents=True, exist_ok=True)
    storage = storage or workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    host = f"127.0.0.1:{port}"
    username = password = ca_bundle = tls_files = htpasswd = None
    if tls:
        pki = make_server_pki(workdir / "pki")
        tls_files, ca_bundle = (pki.cert, pki.key), pki.ca_cert
    if basic_auth:
        username, password = "builder", secrets.token_urlsafe(12)
        htpasswd = workdir / "htpasswd"
        _htpasswd(htpasswd, username, password)
    config = localregistry.config(host, storage, name=name, tls=tls_files, htpasswd=htpasswd)
    config.update(extra or {})  # e.g. token auth in place of htpasswd
    if public_url:
        config["http"]["host"] = public_url
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    scheme = "https" if tls else "http"
    url = f"{scheme}://{host}"
    server = procs.start(name, [binary, "serve", str(config_path)], workdir / "registry.log")
    verify = str(ca_bundle) if ca_bundle else True
    server.wait_ready(lambda: localregistry.answers(url, verify), timeout=30, what=f"GET {url}/v2/")
    return Registry(host, url, storage, username, password, ca_bundle, server)
