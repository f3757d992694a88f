"""The one way the tests run the command line: `invoke ARGS` as a user types it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers.paths import INVOKE, ROOT
from tests.helpers.registries import credentials_env


def invoke(*args: str, env: dict | None = None, cwd: Path = ROOT,
           timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs `invoke ARGS` from `cwd` with the environment plus `env`; output captured as text.
    The timeout only bounds a hang: a test that meets it fails instead of blocking the suite."""
    return subprocess.run([str(INVOKE), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def generate(versions_path: Path) -> None:
    """Writes the family's Dockerfile tree beside its versions file, as a project commits it."""
    done = invoke("generate", "--versions", str(versions_path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def release(*args: str, registry, env: dict | None = None) -> subprocess.CompletedProcess:
    """`invoke release ARGS` against a TLS test-bed registry, its CA and CI credentials given."""
    return invoke("release", "--registry", registry.host, "--ca-bundle", str(registry.ca_bundle), *args,
                  env={**credentials_env(registry), **(env or {})})
