"""Copies of the tiny fixture family (tests/fixtures/tiny) and of the examples, renamed so tests
do not share tags."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.helpers.cli import generate as generate_tree
from tests.helpers.paths import ROOT, TINY


def tiny_family(directory: Path, repository: str, *, extra_run: str | None = None,
                windows_base: str | None = None, generate: bool = False) -> Path:
    """The tiny family as `repository` in `directory`; returns its versions.yaml.
    `extra_run` gives the busybox template one more RUN step; `windows_base` replaces the
    Windows variant's mcr.microsoft.com base; `generate` writes its Dockerfile tree there."""
    shutil.copytree(TINY, directory)
    path = directory / "versions.yaml"
    text = path.read_text().replace("repository: tiny\n", f"repository: {repository}\n")
    if windows_base:
        text = text.replace("from: mcr.microsoft.com/windows/servercore:1809", f"from: {windows_base}")
    path.write_text(text)
    if extra_run:
        template = directory / "templates" / "busybox.Dockerfile.j2"
        template.write_text(template.read_text().replace('CMD ["sh"]', f'RUN {extra_run}\nCMD ["sh"]'))
    if generate:
        generate_tree(path)
    return path


def example_family(directory: Path, example: str, repository: str, *,
                   smoke: str | None = None) -> Path:
    """The family of examples/<example> as `repository` in `directory`, its Dockerfile tree
    generated there; `smoke` is a smoke.yaml for its templates. Returns its versions.yaml."""
    shutil.copytree(ROOT / "examples" / example, directory)
    path = directory / "versions.yaml"
    path.write_text(re.sub(r"^repository: .*$", f"repository: {repository}", path.read_text(),
                           count=1, flags=re.M))
    if smoke:
        (directory / "templates" / "smoke.yaml").write_text(smoke)
    generate_tree(path)
    return path


def derived_family(tmp_path: Path, tiny_family_path: Path, repository: str = "tiny",
                   platforms: str = "amd64, arm64v8") -> Path:
    """The tiny family as `repository`, plus `onbuild`, a variant built FROM its own busybox image."""
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    text = tiny_family_path.read_text().replace("repository: tiny\n", f"repository: {repository}\n")
    text = text.replace("\nversions:\n", "\n  onbuild: {template: busybox, directory: busybox/onbuild,"
                        f" from: \"{repository}:1.0.0-busybox\", platforms: [{platforms}]}}\n"
                        "\nversions:\n")
    text = text.replace("variants: [busybox, slim-busybox, windowsservercore-1809]",
                        "variants: [onbuild, busybox, slim-busybox, windowsservercore-1809]", 1)
    path = tmp_path / "versions.yaml"
    path.write_text(text)
    return path


def broken_family(tmp_path: Path, tiny_family_path: Path) -> Path:
    """The tiny family renamed `tiny-broken`, plus a variant whose RUN step exits 3."""
    templates = tmp_path / "templates"
    shutil.copytree(tiny_family_path.parent / "templates", templates)
    (templates / "broken.Dockerfile.j2").write_text(
        "FROM {{ variant.base_image }}\nENV TINY_VERSION {{ version.full }}\n"
        "RUN echo about to fail && exit 3\nCMD [\"sh\"]\n")
    text = tiny_family_path.read_text().replace("repository: tiny\n", "repository: tiny-broken\n")
    text = text.replace("\nversions:\n", "\n  broken: {template: broken, from: \"busybox:latest\","
                        " platforms: [amd64, arm64v8]}\n\nversions:\n")
    text = text.replace("variants: [busybox, slim-busybox, windowsservercore-1809]",
                        "variants: [busybox, broken, slim-busybox, windowsservercore-1809]", 1)
    path = tmp_path / "versions.yaml"
    path.write_text(text)
    return path
