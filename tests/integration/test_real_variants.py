"""Every Debian variant of 3.14 built for real on amd64, and the free-threaded ones: each
CPython build as rendered (PGO, LTO), through the local mirrors, smoke-tested, pushed and
published, with its size compared with upstream's published image.

Marked `variantbuild`: six CPython builds of 15 to 50 minutes each on 2 cores, so neither the
default run nor CI includes them (CI keeps test_real_image.py's amd64 slim build). Run them
once, in a checkout that ran scripts/setup:

    .venv/bin/pytest tests/integration/test_real_variants.py -m variantbuild

They use the machine's registry of `invoke registry` (127.0.0.1:5000) as the base mirror,
as scripts/demo does: `invoke mirror` puts Debian's trixie and bookworm bases there (minbase
and slim) and serves the source mirror; `buildpack-deps:<suite>`, the full variants' base, is
released there by this tool from examples/buildpack-deps. The python images go to the
`real/` namespace of that registry (127.0.0.1:5000/real/python:…), so that nothing of
scripts/demo's python:3.14-slim is overwritten. Each writes out/real/3.14-<variant>.json,
which `bench/real_build.py --variants out/real/*.json` turns into the per-variant table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from builder.commands.mirror import DEFAULT_DIR
from builder.mirror import serve
from builder.model.smoke import for_variant
from builder.options import DEFAULT_MIRROR_PORT
from builder.model.versions import load
from builder.registry.client import RegistryClient
from tests.helpers.attestations import package_names, sboms
from tests.helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import real_build  # noqa: E402  (bench/ is scripts, not a package: its figures live there)

pytestmark = pytest.mark.variantbuild

REGISTRY = "127.0.0.1:5000"  # `invoke registry`'s, the base mirror builders/local.yaml names
NAMESPACE = f"{REGISTRY}/real"
OUT = ROOT / "out" / "real"
BUILD_TIMEOUT = 3 * 3600  # one cold CPython build on 2 busy cores, with room to spare
ENV = {**os.environ, "BUILDER_BASE_MIRROR": REGISTRY}


def invoke(*argv: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "invoke"), *argv], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]


@pytest.fixture(scope="module")
def mirrors():
    """The registry, the Debian bases of both suites, the source mirror served. The bases
    for the default platforms (amd64, i386), not amd64 alone: each base is a list, and one of
    amd64 alone would take i386 out of scripts/demo's debian:trixie-slim."""
    mirror_was_up = serve.answers(DEFAULT_MIRROR_PORT) is not None
    _ok(invoke("registry", "--port", REGISTRY.rsplit(":", 1)[1]))
    try:
        _ok(invoke("mirror", "--version", "3.14", "--suite", "trixie", "--suite", "bookworm",
                   "--registry", REGISTRY, timeout=3600))
        yield
    finally:
        if not mirror_was_up:
            serve.stop(DEFAULT_DIR)


@pytest.fixture(scope="module")
def buildpack_deps(mirrors):
    """buildpack-deps:trixie and :bookworm (curl, scm, full) for amd64 in the base mirror."""
    _ok(invoke("release", "--version", "1.0.0", "--versions",
               str(ROOT / "examples" / "buildpack-deps" / "versions.yaml"), "--registry",
               f"{REGISTRY}/library", "--builders", str(ROOT / "builders" / "local.yaml"),
               "--platform", "amd64", "--report", str(OUT / "buildpack-deps.json"),
               "--out", str(OUT / "buildpack-deps"), "--logs", str(OUT / "logs"),
               timeout=BUILD_TIMEOUT))


@pytest.mark.parametrize("variant", real_build.REAL_VARIANTS)
def test_the_variant_builds_smoke_tests_and_is_upstreams_size(variant, request, mirrors):
    if not variant.startswith("slim-"):
        request.getfixturevalue("buildpack_deps")
    family = load(ROOT / "versions.yaml")
    version = family.version("3.14")
    report_path = OUT / f"3.14-{variant}.json"
    done = invoke("release", "--version", "3.14", "--variant", variant, "--platform", "amd64",
                  "--registry", NAMESPACE, "--builders", str(ROOT / "builders" / "local.yaml"),
                  "--report", str(report_path), "--out", str(OUT / variant),
                  "--logs", str(OUT / "logs"), "--no-cache", "--force", "--attest",
                  timeout=BUILD_TIMEOUT)
    _ok(done)
    report = json.loads(report_path.read_text())
    [job] = report["jobs"]
    assert (job["job"], job["status"]) == (f"{version.full}/{variant}/amd64", "built")
    expected = [check.name for check in for_variant(family.checks, variant, is_windows=False)]
    assert [(c["name"], c["result"]) for c in job["checks"]] == [(n, "passed") for n in expected]
    assert ("free-threaded" in expected) == variant.endswith("-freethreaded")
    [row] = real_build.variant_rows([report], real_build.python_layer)
    assert row["python_layer"] and row["python_layer"] < row["compressed"]
    [sbom] = sboms(RegistryClient(REGISTRY), "real/python", f"{version.full}-{variant}").values()
    assert {"CPython", "pip", "libc6", "expat", "mpdecimal"} <= package_names(sbom)
    if row["ratio"] is not None:
        assert abs(row["ratio"] - 1) <= real_build.WITHIN, real_build.variant_table([row])
