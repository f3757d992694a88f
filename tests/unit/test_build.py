"""The build command's input checks and the engine trace parsing, without an engine."""
from __future__ import annotations

import pytest

from builder.farm import runner as build
from builder.model import versions
from builder.farm.engineapi import traced_command
from builder.plan.plan import plan
from builder.model.platforms import platform
from tests.helpers.cli import invoke


def test_an_unknown_platform_is_bad_input(tiny_family_path):
    done = invoke("build", "--version", "1.0.0", "--platform", "linux/sparc",
                  "--versions", str(tiny_family_path))

    assert done.returncode == 2
    assert done.stderr.startswith("error: platform: unknown platform 'linux/sparc'; known: amd64")
    assert "plan for" not in done.stdout


@pytest.mark.parametrize("line, expected", [
    ("+ echo 0000 *python.tar.xz", "echo 0000 *python.tar.xz"),
    # A pipeline's two traces on one line: both markers first, then one command's text.
    ("+ + echo 0000 *python.tar.xz", "echo 0000 *python.tar.xz"),
    ("+ + + sha256sum -c -", "sha256sum -c -"),
    ("++ dpkg --print-architecture", None),  # a command substitution's inner trace
    ("+ ", None),
    ("Get:1 http://deb.debian.org trixie InRelease", None),
])
def test_a_trace_line_names_its_command_with_every_marker_taken_off(line, expected):
    assert traced_command(line) == expected
