"""The README's quick demo, `scripts/demo-hello`, from a fresh clone as a newcomer runs it.
(The first command, `scripts/demo`, is tests/test_real_image.py: it builds CPython.)"""
from __future__ import annotations

import json
import os
import subprocess

from testbed.engine import local_client, remove_tags_of
from testbed.procs import free_port
from tests.helpers.paths import ROOT


def test_scripts_demo_hello_releases_the_example_family_from_a_fresh_clone(tmp_path, docker_client):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    try:
        done = subprocess.run(["bash", "scripts/demo-hello"], cwd=clone, capture_output=True, text=True,
                              env={**os.environ, "DEMO_PORT": str(port)}, stdin=subprocess.DEVNULL,
                              timeout=1200)

        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        report = json.loads((clone / "out" / "hello-1.0.0.json").read_text())
        assert (report["exit_code"], report["stopped_at"]) == (0, None)
        assert {job["status"] for job in report["jobs"]} == {"built"}
        assert len(report["jobs"]) == 14
        assert {tag["status"] for tag in report["tags"]} == {"written"}
        latest = (clone / "out" / "hello" / "remote" / "latest.md").read_text()
        assert latest.startswith(f"## `{host}/hello:latest`\n")
        assert "\t-\tlinux; arm64 variant v8\n" in latest
        ran = docker_client.containers.run(f"{host}/hello:1.0.0", remove=True,
                                           platform="linux/s390x")
        assert ran.decode() == "hello 1.0.0 on linux/s390x, s390x\n"
    finally:
        subprocess.run([str(clone / ".venv" / "bin" / "invoke"), "registry", "--stop"], cwd=clone,
                       capture_output=True)
        remove_tags_of(local_client(), host)
