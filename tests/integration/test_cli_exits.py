"""Exit codes a pipeline can trust, against real servers: `summary` of a tag the registry does
not have, `update --check` against a release index that is current, newer, asked about a
series it lacks, down or no index; and `mirror --stop`, which names the server it stops and
stops only the one started for this machine's mirror directory.

Each command runs as `python -m builder`, outside the checkout; the mirror test points the
machine's cache directory at a temporary one (XDG_CACHE_HOME), so the real mirror is left alone.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.mirror import layout, serve
from testbed.procs import free_port
from tests.helpers.cli import python_image_builder
from tests.helpers.paths import TINY


def run(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return python_image_builder(*args, cwd=cwd, env=env)


def test_the_summary_of_a_missing_tag_exits_1_in_one_line(registry, tmp_path):
    missing = f"{registry.host}/nothing/here:1.0"
    done = run(tmp_path, "summary", missing)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == f"error: {missing}: no such tag in {registry.host}\n"
    assert done.stdout == ""
    written = run(tmp_path, "summary", missing, "--out", str(tmp_path / "pages"))
    assert written.returncode == 1 and not (tmp_path / "pages").exists()


@pytest.fixture
def index(tmp_path):
    """A python.org-layout release index served on loopback (the mirror server's handler,
    in this process) holding the tiny family's releases, 1.0.0 and 0.9.1: (its tree, URL)."""
    tree = tmp_path / "index"
    for release in ("1.0.0", "0.9.1"):
        _add(tree, release)
    (tree / "maintenance").mkdir()
    (tree / "maintenance" / "index.html").write_text("<html><h1>Down for maintenance</h1></html>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(serve.Handler, directory=str(tree)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tree, f"http://127.0.0.1:{server.server_address[1]}/python/"
    server.shutdown()
    thread.join()


def _add(tree: Path, release: str) -> None:
    tarball = tree / layout.tarball_path(release)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tarball.write_bytes(b"a stand-in: --check reads listings only")


def test_update_check_exits_0_current_1_newer_2_bad_input_4_unreachable(index, tmp_path):
    tree, url = index
    family = tmp_path / "tiny"
    shutil.copytree(TINY, family)
    before = (family / "versions.yaml").read_text()

    def check(*args: str, source: str = url) -> subprocess.CompletedProcess:
        return run(family, "update", "--check", "--source", source, *args)

    current = check()
    assert current.returncode == 0, current.stdout + current.stderr
    assert "1.0: 1.0.0, up to date" in current.stdout
    bad = check("--series", "2.0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "2.0" in bad.stderr
    closed = f"http://127.0.0.1:{free_port()}/python/"
    for source, says in ((closed, f"GET {closed}: "),
                         (url.replace("python/", "maintenance/"), "not an HTML directory listing")):
        down = check(source=source)
        assert down.returncode == 4, down.stdout + down.stderr
        assert down.stderr.count("\n") == 1 and says in down.stderr
    _add(tree, "1.0.1")
    newer = check()
    assert newer.returncode == 1, newer.stdout + newer.stderr
    assert "1.0: 1.0.0 → 1.0.1 available" in newer.stdout
    assert check("--quiet").stdout == \
        "update: failed (exit 1): a newer release exists: 1.0 1.0.0 → 1.0.1\n"
    assert (family / "versions.yaml").read_text() == before


def test_mirror_stop_names_the_server_and_stops_only_this_machines(tmp_path):
    machine = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    default = tmp_path / "cache" / "python-image-builder" / "mirror"
    default.mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    port, other_port = free_port(), free_port()
    started = run(tmp_path, "mirror", "--versions", str(TINY / "versions.yaml"), "--no-bases",
                  "--port", str(port), env=machine)
    assert started.returncode == 0, started.stdout + started.stderr
    serve.start(other, other_port)
    try:
        pid = int((default / layout.WORK / "serve.pid").read_text())
        stopped = run(tmp_path, "mirror", "--stop", "--port", str(other_port), env=machine)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == (f"stopped the mirror server of {default} on "
                                  f"http://127.0.0.1:{port} (pid {pid})\n")
        assert serve.answers(port) is None and serve.answers(other_port) == other.resolve()
        again = run(tmp_path, "mirror", "--stop", "--port", str(other_port), env=machine)
        assert again.stdout == (
            f"no mirror server started for {default}\n"
            f"the mirror server on http://127.0.0.1:{other_port} serves {other.resolve()}, left "
            f"running; stop it with: invoke mirror --stop --dir {other.resolve()}\n")
        assert serve.answers(other_port) == other.resolve()
    finally:
        serve.stop(other)
        serve.stop(default)
