"""The inventory's edge against a stand-in engine: an image's files are read through a container
created and never started, which starts only when a Python is on the image's PATH."""
from __future__ import annotations

import base64
import io
import json
import tarfile
import threading

import docker.errors
import pytest
import requests

from builder.attest import inventory
from builder.farm import attestations
from builder.model.errors import AttestationError
from builder.model.platforms import platform

LINK = 1 << 27
OS_RELEASE = b'ID=debian\nVERSION_CODENAME=trixie\n'
STATUS = b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.41-12\n"
PYTHON = json.dumps({"version": "3.14.0", "distributions": [["pip", "25.2"]]})


class Engine:
    """The calls `read_inventory` makes, on an image whose files are `files` (path → bytes, or
    (mode, linkTarget) for a link or a program's stat)."""

    def __init__(self, files: dict, env=("PATH=/usr/local/bin:/usr/bin",), printed="",
                 exit_code=0):
        self.files, self.env, self.printed, self.exit_code = files, list(env), printed, exit_code
        self.calls: list[str] = []

    def create_container(self, image, command, **_):
        self.calls.append("create")
        self.command = command
        return {"Id": "c1"}

    def inspect_container(self, container):
        return {"Config": {"Env": self.env}}

    def _stat(self, path):
        if path not in self.files:
            raise docker.errors.NotFound(f"Could not find the file {path}")
        value = self.files[path]
        mode, target = value if isinstance(value, tuple) else (0o644, "")
        return {"name": path.rsplit("/", 1)[1], "mode": mode, "linkTarget": target}

    def get_archive(self, container, path):
        self.calls.append(f"get {path}")
        stat = self._stat(path)
        value = self.files[path]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            member = tarfile.TarInfo(stat["name"])
            if isinstance(value, bytes):
                member.size = len(value)
                archive.addfile(member, io.BytesIO(value))
            else:
                member.type = tarfile.SYMTYPE if stat["linkTarget"] else tarfile.REGTYPE
                archive.addfile(member)
        return iter([buffer.getvalue()]), stat

    def _url(self, pathfmt, *args):
        return pathfmt.format(*args)

    def head(self, url, params):
        self.calls.append(f"head {params['path']}")
        answer = requests.Response()
        try:
            stat = self._stat(params["path"])
        except docker.errors.NotFound:
            answer.status_code = 404
            return answer
        answer.status_code = 200
        answer.headers["X-Docker-Container-Path-Stat"] = base64.b64encode(
            json.dumps(stat).encode()).decode()
        return answer

    def _raise_for_status(self, answer):
        answer.raise_for_status()

    def start(self, container):
        self.calls.append("start")

    def wait(self, container, timeout):
        return {"StatusCode": self.exit_code}

    def logs(self, container, **_):
        return self.printed.encode()

    def remove_container(self, container, force):
        self.calls.append("remove")


def _read(engine):
    return attestations.read_inventory(engine, "sha256:image", platform("arm64v8"),
                                       lambda line: None)


def test_an_image_without_python_is_read_without_starting_a_container():
    engine = Engine({"/bin/sh": (0o755, "")})
    found = _read(engine)
    assert (found.manager, found.packages, found.python, found.os_release) == ("", (), None, {})
    assert "start" not in engine.calls
    assert engine.calls[0] == "create" and engine.calls[-1] == "remove"


def test_a_debian_image_s_files_are_read_a_symlink_followed_and_its_python_asked():
    engine = Engine({"/etc/os-release": (LINK | 0o777, "/usr/lib/os-release"),
                     "/usr/lib/os-release": OS_RELEASE, "/var/lib/dpkg/status": STATUS,
                     "/usr/local/bin/python3": (LINK | 0o777, "/usr/local/bin/python3.14"),
                     "/usr/local/bin/python3.14": (0o755, "")}, printed=PYTHON + "\n")
    found = _read(engine)
    assert found.os_release == {"ID": "debian", "VERSION_CODENAME": "trixie"}
    assert [p.name for p in found.packages] == ["libc6"] and found.manager == "dpkg"
    assert found.python == "3.14.0"
    assert engine.command == ["/bin/sh", "-c", inventory.PYTHON_SCRIPT]
    assert engine.calls.count("start") == 1 and engine.calls.count("create") == 1
    assert "get /usr/lib/os-release" in engine.calls  # through the link


def test_a_python_file_that_is_no_program_is_not_asked():
    engine = Engine({"/usr/bin/python3": (0o644, "")}, printed=PYTHON)
    assert _read(engine).python is None
    assert "start" not in engine.calls


def test_a_python_that_fails_stops_the_push():
    engine = Engine({"/usr/bin/python3": (0o755, "")}, exit_code=1)
    with pytest.raises(AttestationError, match="Python exited 1 .*nothing was pushed"):
        _read(engine)
    assert engine.calls[-1] == "remove"


def test_an_engine_error_is_an_attestation_error_and_the_container_is_removed():
    class Failing(Engine):
        def get_archive(self, container, path):
            raise docker.errors.APIError("500 Server Error: mount failed")

    engine = Failing({})
    with pytest.raises(AttestationError, match="inventory could not be read: .*nothing was"):
        _read(engine)
    assert engine.calls[-1] == "remove"


def test_the_files_and_the_places_a_python_may_be_are_read_four_at_once():
    class Counting(Engine):
        """Each read or stat waits (at most a second) until four are in flight."""
        lock, four, now, most = threading.Lock(), threading.Event(), 0, 0

        def _held(self, call, *args):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
                if self.now == 4:
                    self.four.set()
            self.four.wait(1)
            try:
                return call(*args)
            finally:
                with self.lock:
                    self.now -= 1

        def get_archive(self, container, path):
            return self._held(super().get_archive, container, path)

        def head(self, url, params):
            return self._held(super().head, url, params)

    engine = Counting({"/etc/os-release": OS_RELEASE})
    assert _read(engine).os_release == {"ID": "debian", "VERSION_CODENAME": "trixie"}
    assert engine.most == attestations.READERS == 4


def test_one_reader_reads_one_file_after_another_in_the_order_of_the_sources():
    engine = Engine({"/usr/lib/os-release": OS_RELEASE, "/var/lib/dpkg/status": STATUS})
    found = attestations.read_inventory(engine, "sha256:image", platform("arm64v8"),
                                        lambda line: None, readers=1)
    assert found.os_release == {"ID": "debian", "VERSION_CODENAME": "trixie"}
    reads = [call for call in engine.calls if call.startswith("get ")]
    assert reads == [f"get {path}" for paths in inventory.SOURCES.values() for path in paths]
