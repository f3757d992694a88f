"""Docker engines of the test bed: the local one, and a second dockerd playing a remote build node."""
from __future__ import annotations

import shutil
from pathlib import Path

import docker
import docker.errors
import requests

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
    server: procs.Server = field(repr=False)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()
        if self.server.process.returncode == 0:
            # Only after a clean exit: dockerd has unmounted its layers by then.
            shutil.rmtree(self.root / "data", ignore_errors=True)


def _pings(url: str) -> bool:
    try:
        with docker.DockerClient(base_url=url, timeout=5) as client:
            return client.ping()
    except (docker.errors.DockerException, requests.RequestException):
        return False


def start_second_engine(workdir: Path) -> SecondEngine:
    """A dockerd with its own roots, socket, pidfile and containerd, and no networking of its own.

    --bridge=none and no iptables, so it cannot clash with the first engine's docker0 and rules;
    without --containerd it starts its own containerd under its exec-root.
    """
    binary = shutil.which("dockerd")
    if not binary:
        raise procs.StartError("dockerd not found: install docker.io (scripts/setup does)")
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = workdir / "docker.sock"
    if len(str(socket_path)) > 100:
        raise procs.StartError(f"socket path too long for a unix socket: {socket_path}")
    config = workdir / "daemon.json"
    config.write_text("{}\n")  # not /etc/docker/daemon.json: the first engine's settings are not ours
    url = f"unix://{socket_path}"
    argv = [binary, "--config-file", str(config), "--data-root", str(workdir / "data"),
            "--exec-root", str(workdir / "exec"), "--pidfile", str(workdir / "docker.pid"),
            "-H", url, "--bridge=none", "--iptables=false", "--ip-masq=false"]
    server = procs.start("second dockerd", argv, workdir / "dockerd.log", stop_timeout=30)
    server.wait_ready(lambda: _pings(url), timeout=60, what=f"ping {url}")
    return SecondEngine(url, docker.DockerClient(base_url=url, timeout=300), workdir, server)
