"""`pip install` of the checkout, as a release engineer installs the tool: a fresh venv outside
the checkout, the runtime dependencies only (from PyPI), then the console command in a copy of
an images repository that has no tasks.py.

The package is built from a copy of what it is made of (pyproject.toml and builder/), so the
build leaves no build/ or *.egg-info in the checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from builder.model.versions import load
from tests.helpers.paths import ROOT


@pytest.mark.install
def test_pip_install_gives_a_command_that_works_in_an_images_repository(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "builder", source / "builder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", str(source)],
        env=env, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    runtime_only = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.util as u, builder; "
         "print(builder.__file__, *(u.find_spec(m) is None for m in ('pytest', 'mitmproxy')))"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert runtime_only.stdout.split() == [
        str(venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "site-packages" / "builder" / "__init__.py"), "True", "True"], runtime_only.stderr

    images = tmp_path / "images"  # what an images repository holds: no tasks.py, no builder/
    images.mkdir()
    shutil.copy(ROOT / "versions.yaml", images)
    shutil.copytree(ROOT / "templates", images / "templates")
    for series in {version.series for version in load(ROOT / "versions.yaml").versions}:
        shutil.copytree(ROOT / series, images / series)

    def command(*argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=images, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done

    listed = command("python-image-builder", "--list").stdout
    for task in ("build", "generate", "library", "mirror", "publish", "registry", "release",
                 "summary", "update"):
        assert f"\n  {task} " in listed
    assert command("python-image-builder", "build", "--help").stdout.startswith(
        "Usage: python-image-builder [--core-opts] build [--options]")
    assert command("python-image-builder", "generate", "--check").stdout.endswith(
        " Dockerfiles up to date\n")
    assert command("python", "-m", "builder", "--list").stdout == listed
