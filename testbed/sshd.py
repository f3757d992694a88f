"""A private sshd on a loopback port, for ssh:// engines: own config, host key and authorized key.

The docker SDK reaches an ssh:// engine by running ``ssh [-l USER] [-p PORT] -- HOST
'docker system dial-stdio'`` (``use_ssh_client=True``), with no way to pass options: the key and
the host key come from the ssh configuration. OpenSSH reads ``~/.ssh/config`` from the passwd
entry's home, not from $HOME, so instead of touching root's files the test bed makes a directory
holding an ``ssh`` that runs ``/usr/bin/ssh -F <our config>``; a test puts it first on PATH
(`SSHServer.path_dir`). The server side runs ``docker system dial-stdio`` with the DOCKER_HOST
given here (sshd's ``SetEnv``), so the session reaches the engine the test bed chose.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; Debian's unit makes it


@dataclass
class SSHServer:
    port: int
    user: str
    ssh_config: Path  # client configuration: our key, our known_hosts, BatchMode
    path_dir: Path  # holds `ssh` → /usr/bin/ssh -F ssh_config; put it first on PATH
    authorized_keys: Path
    server: procs.Server = field(repr=False)

    @property
    def known_hosts(self) -> Path:
        return self.ssh_config.parent / "known_hosts"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def ssh(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.path_dir / "ssh"), "-p", str(self.port), "-l", self.user,
                               "127.0.0.1", *command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        self.server.stop()


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd(workdir: Path, *, docker_host: str | None = None) -> SSHServer:
    """sshd -D on 127.0.0.1:<free port>: root by key only, the key made here; see the module doc."""
    ssh = shutil.which("ssh")
    if not SSHD.exists() or not ssh or not shutil.which("ssh-keygen"):
        raise procs.StartError("sshd or ssh not found: install openssh-server (scripts/setup does)")
    workdir.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    _keygen(host_key, "python-image-builder test sshd")
    _keygen(client_key, "python-image-builder test client")
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text((workdir / "client_ed25519.pub").read_text())
    authorized_keys.chmod(0o600)
    port = procs.free_port()
    config = workdir / "sshd_config"
    lines = [f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
             f"PidFile {workdir / 'sshd.pid'}", f"AuthorizedKeysFile {authorized_keys}",
             "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
             "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
             # The work dir lies under /tmp, which is world-writable: StrictModes would refuse it.
             "StrictModes no", "X11Forwarding no", "PrintMotd no", "LogLevel VERBOSE"]
    if docker_host:
        lines.append(f"SetEnv DOCKER_HOST={docker_host}")
    config.write_text("\n".join(lines) + "\n")
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode:
        raise procs.StartError(f"sshd -t -f {config}: {check.stderr.strip()}")

    known_hosts = workdir / "known_hosts"
    host_public = (workdir / "host_ed25519.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    ssh_config = workdir / "ssh_config"
    ssh_config.write_text("\n".join([
        "Host 127.0.0.1", f"  IdentityFile {client_key}", "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {known_hosts}", "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes", "  BatchMode yes", "  LogLevel ERROR"]) + "\n")
    path_dir = workdir / "bin"
    path_dir.mkdir(exist_ok=True)
    wrapper = path_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {ssh} -F {ssh_config} "$@"\n')
    wrapper.chmod(0o755)

    # -D: stays in the foreground (our child, stopped by PID); -e: its log to stderr → the log file.
    server = procs.start("sshd", [str(SSHD), "-D", "-e", "-f", str(config)], workdir / "sshd.log",
                         env={**os.environ})
    server.wait_ready(lambda: _listening(port), timeout=20, what=f"listen on 127.0.0.1:{port}")
    return SSHServer(port, "root", ssh_config, path_dir, authorized_keys, server)
