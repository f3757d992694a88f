"""The modern engine of the test bed: Debian sid's Docker 28.5 with the containerd image store and
BuildKit (buildx), run as a container of the host's engine, beside the host's own 20.10.

- ``prepare``: a sid minbase rootfs with docker.io, buildx, containerd, runc and iptables (by
  mmdebstrap, cached by its recipe) imported as the image ``pib/modern-engine:sid-KEY``; its
  ``docker-buildx`` binary is also kept for the host (it needs only libc). scripts/setup runs it.
- ``start``: the engine in the container ``pib-modern``: its own network and cgroup namespaces, all
  capabilities but CAP_SYS_RESOURCE (the host engine refuses --privileged), unconfined seccomp and
  AppArmor, its data root on the volume ``pib-modern-data``. Its API is the unix socket
  ``run/docker.sock`` in this module's cache directory, and tcp://127.0.0.1:PORT (plain: loopback
  only) through the relay container ``pib-modern-relay`` on the host's network, which also joins
  the two loopbacks (testbed/loopback.py): a registry on the host's 127.0.0.1:PORT is
  127.0.0.1:PORT inside the engine too, for pulls, pushes and RUN steps on the host network.
- ``stop``: both containers and the volume go.

A test session owns the engine it started (the containers' owner label) and stops it at its end;
one a session killed before its teardown left is reaped by the next (reap). One started from the
command line is kept until stopped there, and test sessions use it as they find it.

    python -m testbed.modern prepare | start | stop
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import docker
import docker.errors
import requests

from . import procs
from .engine import CERTS_D, local_client, pings
from .paths import cache_dir

SUITE = "sid"
PACKAGES = ("docker.io", "docker-cli", "docker-buildx", "containerd", "runc", "iptables",
            "ca-certificates", "python3-minimal")  # python3 for the loopback relays
# sid's Release file is often past its Valid-Until on a mirror mid-sync.
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"',)
ARCHIVE = "http://deb.debian.org/debian"
REPOSITORY = "pib/modern-engine"
ENGINE, RELAY, DATA = "pib-modern", "pib-modern-relay", "pib-modern-data"
RELAY_PORT = 999  # inside the engine's namespace only, where nothing else listens on it
OWNER_LABEL = "python-image-builder.owner"  # a test session's PID, or KEEP
CONFIG_LABEL = "python-image-builder.config"  # what the containers were made from (config())
API_LABEL = "python-image-builder.api-port"
KEEP = "keep"
BUILDX_IN_ROOTFS = "usr/libexec/docker/cli-plugins/docker-buildx"
SCRIPTS = (Path(__file__).with_name("modern-start.sh"), Path(__file__).with_name("loopback.py"))


def rootfs_key() -> str:
    """Names the rootfs by its recipe: another package list or option makes another image."""
    recipe = json.dumps([SUITE, PACKAGES, APT_OPTIONS, ARCHIVE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def work_dir() -> Path:
    return cache_dir() / "modern"


def recipe_dir() -> Path:
    """The rootfs tarball, its mmdebstrap log and the host's docker-buildx, of the current recipe."""
    return work_dir() / f"{SUITE}-{rootfs_key()}"


def run_dir() -> Path:
    """Bind-mounted into both containers as /run/pib: the API socket and the relays' socket."""
    return work_dir() / "run"


def image_name() -> str:
    return f"{REPOSITORY}:{SUITE}-{rootfs_key()}"


def buildx_binary() -> Path:
    """sid's docker-buildx for the host, run as it is (not installed as a plugin of the host's CLI,
    whose `docker build` would then go through BuildKit)."""
    return recipe_dir() / "docker-buildx"


def _mmdebstrap(rootfs: Path) -> None:
    log = rootfs.with_name("mmdebstrap.log")
    part = rootfs.with_suffix(".part")
    argv = ["mmdebstrap", "--quiet", "--variant=minbase", "--architectures=amd64",
            f"--include={','.join(PACKAGES)}", *(f"--aptopt={o}" for o in APT_OPTIONS),
            "--format=tar", "--skip=output/dev", SUITE, str(part), ARCHIVE]
    with open(log, "w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode:
        part.unlink(missing_ok=True)
        raise procs.StartError(f"mmdebstrap {SUITE} failed (exit {done.returncode}); log {log}:\n"
                               f"{procs.log_tail(log, 10)}")
    part.rename(rootfs)


def _extract_buildx(rootfs: Path, target: Path) -> None:
    with tarfile.open(rootfs) as tar:
        member = tar.getmember(f"./{BUILDX_IN_ROOTFS}")
        source = tar.extractfile(member)
        if source is None:
            raise procs.StartError(f"{rootfs}: {BUILDX_IN_ROOTFS} is not a file")
        part = target.with_suffix(".part")
        part.write_bytes(source.read())
    part.chmod(0o755)
    part.rename(target)


def _has_image(host: docker.DockerClient, name: str) -> bool:
    try:
        host.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def prepare(host: docker.DockerClient, out: TextIO) -> str:
    """The engine image and the host's buildx of the current recipe, made when missing; their names."""
    name, rootfs = image_name(), recipe_dir() / "rootfs.tar"
    if _has_image(host, name) and buildx_binary().exists():
        return f"{name}, {buildx_binary()}"
    if not rootfs.exists():
        for stale in work_dir().glob(f"{SUITE}-*"):
            shutil.rmtree(stale)
        recipe_dir().mkdir(parents=True)
        print(f"modern: mmdebstrap {SUITE} minbase with {' '.join(PACKAGES)}", file=out, flush=True)
        _mmdebstrap(rootfs)
    if not _has_image(host, name):
        print(f"modern: importing {rootfs} as {name}", file=out, flush=True)
        host.api.import_image_from_file(str(rootfs), repository=REPOSITORY, tag=name.split(":")[1])
    if not buildx_binary().exists():
        _extract_buildx(rootfs, buildx_binary())
    # The listings, not the objects: those inspect each entry, and other sessions' come and go.
    in_use = {c["ImageID"] for c in host.api.containers(all=True)}
    for image in host.api.images(REPOSITORY):
        if name not in (image["RepoTags"] or ()) and image["Id"] not in in_use:
            host.images.remove(image["Id"], force=True)  # of an earlier recipe
    return f"{name}, {buildx_binary()}"


def config(image_id: str) -> str:
    """What a reused engine must have been made from: this image, these scripts, this relay port."""
    digest = hashlib.sha256(f"{image_id} {RELAY_PORT}".encode())
    for script in SCRIPTS:
        digest.update(script.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class ModernEngine:
    url: str  # docker base_url: "unix://…/run/docker.sock"
    tcp_url: str  # "tcp://127.0.0.1:PORT", the same API without TLS
    client: docker.DockerClient
    owner: str  # the PID of the test session that started it, or KEEP
    host: docker.DockerClient = field(repr=False)

    def release(self) -> None:
        """A test session's end: stop the engine, unless it is kept for the command line."""
        self.client.close()
        if self.owner != KEEP:
            remove(self.host)


def _containers(host: docker.DockerClient) -> dict[str, docker.models.containers.Container]:
    found = {}
    for name in (ENGINE, RELAY):
        try:
            found[name] = host.containers.get(name)
        except docker.errors.NotFound:
            pass
    return found


def remove(host: docker.DockerClient) -> None:
    """Both containers (the engine's dockerd stopped first, so it exits cleanly) and the data volume."""
    found = _containers(host)
    if RELAY in found:
        found[RELAY].remove(force=True)
    if ENGINE in found:
        found[ENGINE].stop(timeout=30)
        found[ENGINE].remove(force=True)
    try:
        host.volumes.get(DATA).remove(force=True)
    except docker.errors.NotFound:
        pass
    for socket in ("docker.sock", "loopback.sock"):
        (run_dir() / socket).unlink(missing_ok=True)


def reap() -> list[str]:
    """Remove the engine a killed test session left behind."""
    try:
        host = local_client()
    except (docker.errors.DockerException, requests.RequestException):
        return []
    owners = {c.labels.get(OWNER_LABEL, "") for c in _containers(host).values()}
    if any(o.isdigit() and not procs.alive(int(o)) for o in owners):
        remove(host)
        return [f"modern engine ({ENGINE}, {RELAY})"]
    return []


def _urls(api_port: str) -> tuple[str, str]:
    return f"unix://{run_dir() / 'docker.sock'}", f"tcp://127.0.0.1:{api_port}"


def _attach(host: docker.DockerClient, owner: str, url: str, tcp_url: str) -> ModernEngine:
    """Once `url` answers: the SDK's client asks the engine its API version as it is made."""
    return ModernEngine(url, tcp_url, docker.DockerClient(base_url=url, timeout=300), owner, host)


def _reusable(host: docker.DockerClient, want: str, owner: str) -> ModernEngine | None:
    """The running engine, if it was made as this one would be and is ours to use."""
    found = _containers(host)
    owners = {c.labels.get(OWNER_LABEL, "") for c in found.values()}
    for theirs in owners - {owner, KEEP}:
        if theirs.isdigit() and procs.alive(int(theirs)):
            raise procs.StartError(f"the modern engine ({ENGINE}) belongs to the running process "
                                   f"{theirs}: wait for it to end")
    if (set(found) != {ENGINE, RELAY} or len(owners) != 1 or not owners <= {owner, KEEP}
            or any(c.status != "running" or c.labels.get(CONFIG_LABEL) != want for c in found.values())):
        return None  # what is left of one goes
    url, tcp_url = _urls(found[RELAY].labels[API_LABEL])
    if pings(url) and pings(tcp_url):
        return _attach(host, owners.pop(), url, tcp_url)
    return None


def _wait(ready: Callable[[], bool], container, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            break
        if ready():
            return
        time.sleep(0.2)
    logs = container.logs(tail=30).decode(errors="replace")
    raise procs.StartError(f"the modern engine's container {container.name} is {container.status}, "
                           f"not ready ({what}) after {timeout:.0f} s; its log:\n{logs}")


def _loops_back(engine_container, api_port: str) -> bool:
    """The whole loop: inside, 127.0.0.1:API_PORT goes out through both relays to the host's
    127.0.0.1:API_PORT, which is this engine's own API again."""
    done = engine_container.exec_run(["docker", "-H", f"tcp://127.0.0.1:{api_port}", "version",
                                      "--format", "{{.Server.Version}}"])
    return done.exit_code == 0


def _run_containers(host: docker.DockerClient, image: str, labels: dict[str, str], api_port: str):
    scripts = work_dir() / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    for script in SCRIPTS:
        shutil.copy2(script, scripts / script.name)  # the worktree that started it may go away
    run_dir().mkdir(parents=True, exist_ok=True)
    CERTS_D.mkdir(parents=True, exist_ok=True)
    mounts = {str(run_dir()): {"bind": "/run/pib", "mode": "rw"},
              str(scripts): {"bind": "/pib", "mode": "ro"}}
    engine = host.containers.run(
        image, ["/pib/modern-start.sh"], name=ENGINE, detach=True, init=True, labels=labels,
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], cgroupns="private",
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        environment={"RELAY_PORT": str(RELAY_PORT)},
        # certs.d: the CAs the test bed's trust_ca installs for its TLS registries, read per connection.
        volumes={**mounts, DATA: {"bind": "/var/lib/docker", "mode": "rw"},
                 str(CERTS_D): {"bind": str(CERTS_D), "mode": "ro"}})
    relay = host.containers.run(
        image, ["python3", "/pib/loopback.py", "outside", "/run/pib/loopback.sock", api_port,
                "/run/pib/docker.sock"],
        name=RELAY, detach=True, init=True, network_mode="host", volumes=mounts,
        labels={**labels, API_LABEL: api_port})
    return engine, relay


def start(host: docker.DockerClient, owner: str | None = None) -> ModernEngine:
    """The modern engine on the `host` engine, reused when one made alike runs, else started
    afresh; raises procs.StartError."""
    owner = owner or str(os.getpid())
    name = image_name()
    try:
        image = host.images.get(name)
    except docker.errors.ImageNotFound:
        raise procs.StartError(f"no image {name} on the local engine: run scripts/setup "
                               "(its modern step makes it)") from None
    want = config(image.id)
    engine = _reusable(host, want, owner)
    if engine:
        return engine
    remove(host)
    api_port = str(procs.free_port())
    container, relay = _run_containers(host, name, {OWNER_LABEL: owner, CONFIG_LABEL: want}, api_port)
    url, tcp_url = _urls(api_port)
    try:
        _wait(lambda: pings(url), container, 60, f"ping {url}")
        _wait(lambda: pings(tcp_url), relay, 10, f"ping {tcp_url}")
        _wait(lambda: _loops_back(container, api_port), container, 10,
              "its 127.0.0.1 reaching the host's")
    except procs.StartError:
        remove(host)
        raise
    return _attach(host, owner, url, tcp_url)


def main(argv: list[str]) -> int:
    try:
        if argv == ["prepare"]:
            print(prepare(local_client(), sys.stderr))
        elif argv == ["start"]:
            engine = start(local_client(), KEEP)
            print(f"{engine.url}\n{engine.tcp_url}")
        elif argv == ["stop"]:
            remove(local_client())
        else:
            print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
            return 2
    except procs.StartError as error:
        print(f"modern: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
