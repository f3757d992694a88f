"""The buildx command line: found on this machine, run against one engine, its output as it comes.

The low-level half of the BuildKit backend; `builder.farm.buildkit` gives the output its meaning.
buildx is Docker's own client of BuildKit (`docker buildx build`), run here as the plain binary
``docker-buildx``, found on PATH or where the docker CLI keeps its plugins; it needs no docker
CLI. Each build gets an environment of its own: ``DOCKER_HOST`` (and TLS files) naming the job's
engine, and a ``DOCKER_CONFIG`` of its own holding only the credentials of the registries that
build reads from, so nothing of the user's Docker config (contexts, builders, every login)
reaches it.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from builder.model.builders import Engine
from builder.model.errors import BuilderError
from builder.registry.credentials import Credentials

BINARY = "docker-buildx"
# Where the docker CLI looks for plugins ($DOCKER_CONFIG/cli-plugins first), in its order.
PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")
INSTALL = ("install buildx: Debian and Ubuntu `apt-get install docker-buildx`, Docker's own "
           "packages `docker-buildx-plugin`, or the docker-buildx binary on PATH")


class BuildxMissing(BuilderError):
    """No buildx runs on this machine."""


class Stalled(BuilderError):
    """buildx printed nothing for longer than the build's timeout, and was stopped."""


def candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where buildx may be, in the order it is looked for: PATH, then the CLI's plugin dirs."""
    env = os.environ if env is None else env
    found = shutil.which(BINARY, path=env.get("PATH", os.defpath))
    dirs = [Path(env["DOCKER_CONFIG"]) / "cli-plugins"] if env.get("DOCKER_CONFIG") else []
    dirs += [Path(d).expanduser() for d in PLUGIN_DIRS]
    return ([Path(found)] if found else []) + [d / BINARY for d in dirs]


@functools.cache
def find() -> tuple[str, str]:
    """The buildx binary this machine runs, and its version line; BuildxMissing if none runs."""
    looked = candidates()
    for path in looked:
        if path.is_file() and os.access(path, os.X_OK):
            try:
                done = subprocess.run([str(path), "version"], capture_output=True, text=True,
                                      timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise BuildxMissing(f"{path} does not run ({error}); {INSTALL}") from None
            if done.returncode:
                raise BuildxMissing(f"`{path} version` exits {done.returncode}: "
                                    f"{(done.stderr or done.stdout).strip()[-300:]}; {INSTALL}")
            return str(path), done.stdout.strip()
    shown = ", ".join(str(p) for p in looked[:1] + looked[-len(PLUGIN_DIRS):])
    raise BuildxMissing(f"no {BINARY} on PATH nor among the docker CLI plugins ({shown}); "
                        f"{INSTALL}")


def problem() -> str | None:
    """Why BuildKit builds cannot run here (no buildx), or None."""
    try:
        find()
    except BuildxMissing as error:
        return str(error)
    return None


def _auths(credentials: Mapping[str, Credentials | None]) -> dict:
    auths = {}
    for host, given in credentials.items():
        if given is not None:
            token = base64.b64encode(f"{given.username}:{given.password}".encode()).decode()
            auths[host] = {"auth": token}
    return {"auths": auths}


@contextmanager
def environment(engine: Engine, credentials: Mapping[str, Credentials | None]) -> Iterator[dict]:
    """The environment of one buildx run against `engine`, with the registries' `credentials`
    (host → credentials, None: anonymous) in a Docker config of its own, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="pib-buildx-") as config:
        directory = Path(config)
        (directory / "config.json").write_text(json.dumps(_auths(credentials)))
        (directory / "config.json").chmod(0o600)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DOCKER_", "BUILDX_"))}
        env.update(DOCKER_CONFIG=config, DOCKER_HOST=engine.url,
                   # Attestations would make the image an index; publish writes the lists.
                   BUILDX_NO_DEFAULT_ATTESTATIONS="1")
        if engine.tls:
            # The CLI takes TLS files by their names in one directory.
            certs = directory / "certs"
            certs.mkdir()
            for name, path in (("ca.pem", engine.tls.ca), ("cert.pem", engine.tls.cert),
                               ("key.pem", engine.tls.key)):
                if path:
                    (certs / name).symlink_to(Path(path).resolve())
            env.update(DOCKER_CERT_PATH=str(certs), DOCKER_TLS="1")
            if engine.tls.ca:
                env["DOCKER_TLS_VERIFY"] = "1"
        yield env


class Run:
    """One buildx process: its stdin given at the start, stdout and stderr read as one stream of
    lines, which stop when it exits or goes quiet for longer than `quiet` seconds."""

    def __init__(self, argv: list[str], env: dict, stdin: bytes, quiet: float) -> None:
        self.quiet = quiet
        self._process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._process.stdin.write(stdin)
            self._process.stdin.close()
        except BrokenPipeError:
            pass  # it ended at once: its output says why

    def _read(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def lines(self) -> Iterator[str]:
        while True:
            try:
                line = self._lines.get(timeout=self.quiet)
            except queue.Empty:
                self.stop()
                raise Stalled(f"buildx printed nothing for {self.quiet:.0f} s and was "
                              "stopped") from None
            if line is None:
                return
            yield line.decode("utf-8", "replace").rstrip("\n")

    def stop(self) -> None:
        """End the build: buildx cancels it on the engine as it exits."""
        if self._process.poll() is None:
            self._process.terminate()

    def wait(self) -> int:
        return self._process.wait()
