"""Smoke tests in the build stage, on the real engine of each kind (fixture build_engine): after
the platform check, before the push."""
from __future__ import annotations

import json
import shutil

from builder.registry.client import RegistryClient
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke

SMOKE = """\
checks:
  - name: machine
    run: uname -m
    expect: x86_64
  - name: release-file
    run: cat /tiny-release
  - name: slim-has-no-sh-extras
    variants: ["slim-*"]
    run: "echo left behind: /bin/busybox; exit 4"
"""


def smoke_family(tmp_path, tiny_family_path, repository: str):
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "smoke.yaml").write_text(SMOKE)
    path = tmp_path / "versions.yaml"
    path.write_text(tiny_family_path.read_text().replace("repository: tiny\n",
                                                         f"repository: {repository}\n"))
    return path


def test_a_failed_smoke_test_fails_its_job_names_the_check_and_pushes_nothing(
        tmp_path, kind_registry, mirror, build_engine, tiny_family_path):
    family = smoke_family(tmp_path, tiny_family_path, "tiny-smoke")
    builders = write_builders(tmp_path / "builders.yaml", mirror.host, build_engine.spec("amd64"))

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--variant", "slim-busybox",
                  "--platform", "amd64", "--push", "--registry", kind_registry.host,
                  "--builders", str(builders), "--versions", str(family),
                  "--logs", str(tmp_path / "logs"), "--report", str(tmp_path / "report.json"))

    assert done.returncode == 1, done.stderr
    assert ("failed: 1.0.0/slim-busybox/amd64: smoke test slim-has-no-sh-extras failed "
            "(exit code 4): left behind: /bin/busybox; nothing was pushed") in done.stderr
    client = RegistryClient(kind_registry.host)
    assert client.head_manifest("tiny-smoke", "1.0.0-slim-busybox-amd64") is None
    assert client.head_manifest("tiny-smoke", "1.0.0-busybox-amd64") is not None
    jobs = {job["job"]: job for job in json.loads((tmp_path / "report.json").read_text())["jobs"]}
    assert [(c["name"], c["result"]) for c in jobs["1.0.0/busybox/amd64"]["checks"]] == [
        ("machine", "passed"), ("release-file", "passed")]
    assert jobs["1.0.0/busybox/amd64"]["checks"][1]["output"].startswith("1.0.0 linux/amd64")
    slim = jobs["1.0.0/slim-busybox/amd64"]
    assert [(c["name"], c["result"], c["exit_code"]) for c in slim["checks"]] == [
        ("machine", "passed", 0), ("release-file", "passed", 0),
        ("slim-has-no-sh-extras", "failed", 4)]
    assert slim["pushed"] == [] and slim["status"] == "failed"
    log = (tmp_path / "logs" / "1.0.0" / "slim-busybox" / "amd64.log").read_text()
    assert "smoke test slim-has-no-sh-extras: FAILED: exit code 4" in log
    assert "  | left behind: /bin/busybox" in log


def test_an_expectation_that_does_not_hold_fails_the_job(tmp_path, kind_registry, mirror,
                                                         build_engine, tiny_family_path):
    family = smoke_family(tmp_path, tiny_family_path, "tiny-smoke-arm")
    builders = write_builders(tmp_path / "builders.yaml", mirror.host, build_engine.spec("arm64v8"))

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "arm64v8",
                  "--push", "--registry", kind_registry.host, "--builders", str(builders),
                  "--versions", str(family), "--logs", str(tmp_path / "logs"))

    assert done.returncode == 1
    assert "smoke test machine failed (expected 'x86_64', got 'aarch64'): aarch64" in done.stderr
    assert RegistryClient(kind_registry.host).head_manifest("tiny-smoke-arm",
                                                       "1.0.0-busybox-arm64v8") is None
