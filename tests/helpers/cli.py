"""How the tests run the command line, as a user types it: `invoke ARGS` in the checkout, and
`python -m builder ARGS` (the installed `python-image-builder`) anywhere else."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import INVOKE, ROOT
from tests.helpers.registries import credentials_env


def invoke(*args: str, env: dict | None = None, cwd: Path = ROOT,
           timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs `invoke ARGS` from `cwd` with the environment plus `env`; output captured as text.
    The timeout only bounds a hang: a test that meets it fails instead of blocking the suite."""
    return subprocess.run([str(INVOKE), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def python_image_builder(*args: str, cwd: Path, env: dict | None = None,
                         timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `python -m builder ARGS` from `cwd`, a directory without tasks.py, with this
    checkout's package on the path, the environment plus `env`, and no builders file unless
    `env` names one; output captured as text."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if "BUILDER_BUILDERS" not in (env or {}):
        environment.pop("BUILDER_BUILDERS", None)  # a plan's engines: the local one
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def generate(versions_path: Path) -> None:
    """Writes the family's Dockerfile tree beside its versions file, as a project commits it."""
    done = invoke("generate", "--versions", str(versions_path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def release(*args: str, registry, env: dict | None = None) -> subprocess.CompletedProcess:
    """`invoke release ARGS` against a TLS test-bed registry, its CA and CI credentials given."""
    return invoke("release", "--registry", registry.host, "--ca-bundle", str(registry.ca_bundle), *args,
                  env={**credentials_env(registry), **(env or {})})
