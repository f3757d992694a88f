"""Docker engines of the test bed: the local one, and a second dockerd playing a remote build node."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests

from . import procs

CERTS_D = Path("/etc/docker/certs.d")


def local_client() -> docker.DockerClient:
    """docker.from_env(), checked with a ping; raises docker.errors.DockerException when no engine answers."""
    client = docker.from_env(timeout=300)
    client.ping()
    return client


def trust_ca(host: str, ca_cert: Path) -> Path:
    """Make every engine of this machine trust `ca_cert` for `host` (certs.d is read per connection)."""
    directory = CERTS_D / host
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_cert, directory / "ca.crt")
    return directory


def untrust(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def remove_tags_of(client: docker.DockerClient, host: str) -> None:
    """Untag local images that name a registry which is going away, so dead references don't pile up."""
    try:
        images = client.images.list()
    except (docker.errors.DockerException, requests.RequestException):
        return
    for image in images:
        for tag in image.tags:
            if tag.startswith(host + "/"):
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.APIError:
                    pass


@dataclass
class SecondEngine:
    url: str  # docker base_url: "unix:///…/docker.sock"
    client: docker.DockerClient
    root: Path
    bridge: str  # its own bridge interface, made here and deleted on stop
    server: procs.Server = field(repr=False)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()
        subprocess.run(["ip", "link", "delete", self.bridge, "type", "bridge"], capture_output=True)
        if self.server.process.returncode == 0:
            # Only after a clean exit: dockerd has unmounted its layers by then.
            shutil.rmtree(self.root / "data", ignore_errors=True)


def _pings(url: str) -> bool:
    try:
        client = docker.DockerClient(base_url=url, timeout=5)  # asks the engine its API version
    except (docker.errors.DockerException, requests.RequestException):
        return False
    try:
        return client.ping()
    except (docker.errors.DockerException, requests.RequestException):
        return False
    finally:
        client.close()


def _make_bridge(name: str) -> None:
    for command in (["ip", "link", "add", name, "type", "bridge"], ["ip", "link", "set", name, "up"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise procs.StartError(f"{' '.join(command)}: {result.stderr.strip()}")


def start_second_engine(workdir: Path) -> SecondEngine:
    """A dockerd with its own roots, socket, pidfile, containerd, key and bridge, and no iptables rules.

    Not --bridge=none: a dockerd started so deletes the host's docker0, the first engine's bridge.
    A bridge of our own instead (dockerd only adopts a non-default bridge that exists), and no
    iptables, so nothing of the first engine's networking is touched. Without --containerd it
    starts its own containerd under its exec-root.
    """
    binary = shutil.which("dockerd")
    if not binary:
        raise procs.StartError("dockerd not found: install docker.io (scripts/setup does)")
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = workdir / "docker.sock"
    if len(str(socket_path)) > 100:
        raise procs.StartError(f"socket path too long for a unix socket: {socket_path}")
    bridge = f"pib{os.getpid()}"[:15]  # one per test session; interface names have at most 15 bytes
    _make_bridge(bridge)
    config = workdir / "daemon.json"
    # Not /etc/docker/daemon.json: the first engine's settings are not ours. The engine ID comes
    # from the key; the default, /etc/docker/key.json, would make both engines one node to anything
    # that tells nodes apart by ID (20.10 takes this path from the config file only).
    config.write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}) + "\n")
    url = f"unix://{socket_path}"
    argv = [binary, "--config-file", str(config), "--data-root", str(workdir / "data"),
            "--exec-root", str(workdir / "exec"), "--pidfile", str(workdir / "docker.pid"),
            "-H", url, "--bridge", bridge, "--iptables=false", "--ip-masq=false"]
    server = procs.start("second dockerd", argv, workdir / "dockerd.log", stop_timeout=30)
    try:
        server.wait_ready(lambda: _pings(url), timeout=60, what=f"ping {url}")
    except procs.StartError:
        subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], capture_output=True)
        raise
    return SecondEngine(url, docker.DockerClient(base_url=url, timeout=300), workdir, bridge, server)
