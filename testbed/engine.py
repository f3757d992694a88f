"""Docker engines of the test bed: the local one, and more dockerds playing remote build nodes."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests

from . import procs
from .pki import make_client_cert, make_server_pki

CERTS_D = Path("/etc/docker/certs.d")


def local_client() -> docker.DockerClient:
    """docker.from_env(), checked with a ping; raises docker.errors.DockerException when no engine answers."""
    client = docker.from_env(timeout=300)
    client.ping()
    return client


_OWNER_FILE = "python-image-builder.owner"  # the PID of the test session that made the directory


def trust_ca(host: str, ca_cert: Path) -> Path:
    """Make every engine of this machine trust `ca_cert` for `host` (certs.d is read per connection)."""
    directory = CERTS_D / host
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_cert, directory / "ca.crt")
    (directory / _OWNER_FILE).write_text(f"{os.getpid()}\n")
    return directory


def reap_trust() -> list[str]:
    """Remove the certs.d entries of test sessions that died without their teardown."""
    reaped = []
    for owner_file in CERTS_D.glob(f"*/{_OWNER_FILE}"):
        owner = owner_file.read_text().strip()
        if owner.isdigit() and not procs.alive(int(owner)):
            shutil.rmtree(owner_file.parent, ignore_errors=True)
            reaped.append(str(owner_file.parent))
    return reaped


def untrust(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def remove_tags_of(client: docker.DockerClient, host: str) -> None:
    """Drop local images that name a registry which is going away, so dead references don't pile up.

    Tags of the host are removed; an image then left with nothing but the host's digest references
    (pulled by digest) goes too, unless a container still uses it.
    """
    try:
        images = client.images.list()
    except (docker.errors.DockerException, requests.RequestException):
        return
    prefix = host + "/"
    for image in images:
        references = image.tags + image.attrs.get("RepoDigests", [])
        if not any(r.startswith(prefix) for r in references):
            continue
        try:
            for tag in image.tags:
                if tag.startswith(prefix):
                    client.images.remove(tag, force=True)
            if all(r.startswith(prefix) for r in references):
                client.images.remove(image.id)
        except docker.errors.APIError:
            pass


@dataclass(frozen=True)
class TLSEndpoint:
    """Where an engine also listens over TCP with --tlsverify, and the files a client needs."""
    url: str  # "tcp://127.0.0.1:PORT"
    ca: Path  # the CA that signed the server's and the client's certificates
    cert: Path  # a client certificate the engine accepts
    key: Path


@dataclass
class SecondEngine:
    url: str  # docker base_url: "unix:///…/docker.sock"
    client: docker.DockerClient
    root: Path
    bridge: str  # its own bridge interface, made here and deleted on stop
    server: procs.Server = field(repr=False)
    tls: TLSEndpoint | None = None  # the same engine over tcp:// with TLS (start_second_engine(tls=True))
    killed: bool = False  # by kill(): its containerd and containers are still there

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would; stop() still cleans up after it."""
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.process.wait()
        self.killed = True

    def stop(self) -> None:
        self.client.close()
        if self.killed:
            # What the killed daemon left running (its containerd, the shims and the containers
            # under them) goes first, by PID; started again on the same roots, dockerd then
            # clears the dead containers, and stopped, it unmounts its layers.
            for pid in _left_by(self.root / "exec"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.server.stop()
            self.server = procs.start(self.server.name, self.server.argv, self.server.log,
                                      stop_timeout=30)
            try:
                self.server.wait_ready(lambda: pings(self.url), timeout=60,
                                       what=f"ping {self.url} after a kill")
            except procs.StartError:
                pass  # wait_ready stopped it; the data directory is left, as after any unclean exit
            self.killed = False
            self.server.stop()
            # A layer mount or the data root's own, which the killed daemon never undid.
            for mount in reversed(Path("/proc/self/mounts").read_text().splitlines()):
                point = mount.split()[1]
                if point == str(self.root) or point.startswith(f"{self.root}/"):
                    subprocess.run(["umount", "-l", point], capture_output=True)
        self.server.stop()
        subprocess.run(["ip", "link", "delete", self.bridge, "type", "bridge"], capture_output=True)
        if self.server.process.returncode == 0:
            # Only after a clean exit: dockerd has unmounted its layers by then.
            shutil.rmtree(self.root / "data", ignore_errors=True)


def _left_by(exec_root: Path) -> list[int]:
    """PIDs of the processes whose command line names `exec_root` (a dockerd's containerd and
    shims), with all their descendants, children first."""
    parents: dict[int, int] = {}
    named = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if str(exec_root) in argv:
            named.append(pid)
    found: list[int] = []

    def visit(pid: int) -> None:
        for child in [c for c, parent in parents.items() if parent == pid]:
            visit(child)
        if pid not in found:
            found.append(pid)

    for pid in named:
        visit(pid)
    return found


def pings(url: str) -> bool:
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


_BRIDGE_PREFIX = "pib"


def reap_bridges() -> list[str]:
    """Delete the bridges of second engines whose test session died without its teardown."""
    listed = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True)
    reaped = []
    for line in listed.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        owner = re.match(rf"{_BRIDGE_PREFIX}(\d+)", name)
        if owner and not procs.alive(int(owner.group(1))):
            subprocess.run(["ip", "link", "delete", name, "type", "bridge"], capture_output=True)
            reaped.append(name)
    return reaped


def _make_bridge(name: str) -> None:
    for command in (["ip", "link", "add", name, "type", "bridge"], ["ip", "link", "set", name, "up"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise procs.StartError(f"{' '.join(command)}: {result.stderr.strip()}")


def start_second_engine(workdir: Path, *, tls: bool = True, number: int = 2) -> SecondEngine:
    """A dockerd with its own roots, socket, pidfile, containerd, key and bridge, and no iptables rules.

    `number` tells the engines of one session apart (the third engine is 3, and so on): it names
    the bridge and the process.

    With `tls` it also listens on tcp://127.0.0.1:PORT with --tlsverify: a throwaway CA signs its
    server certificate (for 127.0.0.1) and a client certificate (`SecondEngine.tls`).

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
    # One per engine of a test session, named by its owner's PID (15 characters at most).
    bridge = f"{_BRIDGE_PREFIX}{os.getpid()}" + (f"e{number}" if number != 2 else "")
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
    endpoint = None
    if tls:
        pki = make_server_pki(workdir / "tls", common_name="python-image-builder second engine")
        client_cert = make_client_cert(pki, workdir / "tls", common_name="client")
        endpoint = TLSEndpoint(f"tcp://127.0.0.1:{procs.free_port()}", pki.ca_cert, client_cert.cert,
                               client_cert.key)
        # The unix socket stays as it is: --tlsverify applies to tcp listeners only.
        argv += ["-H", endpoint.url, "--tlsverify", "--tlscacert", str(pki.ca_cert),
                 "--tlscert", str(pki.cert), "--tlskey", str(pki.key)]
    name = {2: "second", 3: "third"}.get(number, f"engine {number}")
    server = procs.start(f"{name} dockerd", argv, workdir / "dockerd.log", stop_timeout=30)
    try:
        server.wait_ready(lambda: pings(url), timeout=60, what=f"ping {url}")
        if endpoint:
            server.wait_ready(lambda: _pings_tls(endpoint), timeout=30, what=f"ping {endpoint.url}")
    except procs.StartError:
        subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], capture_output=True)
        raise
    return SecondEngine(url, docker.DockerClient(base_url=url, timeout=300), workdir, bridge, server,
                        endpoint)


def _pings_tls(endpoint: TLSEndpoint) -> bool:
    # requests, not the docker SDK: `verify=` on the request, which REQUESTS_CA_BUNDLE can't replace.
    try:
        answer = requests.get(endpoint.url.replace("tcp://", "https://", 1) + "/_ping", timeout=5,
                              verify=str(endpoint.ca), cert=(str(endpoint.cert), str(endpoint.key)))
    except requests.RequestException:
        return False
    return answer.status_code == 200
