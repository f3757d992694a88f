"""The publish wing and the plan load no Docker SDK: publishing needs no engine.

Publish checks its stale members through `builder.plan.identity` and the registry, never
through the build stage's runner; this imports them in a fresh interpreter and looks.
"""
from __future__ import annotations

import subprocess
import sys

from tests.helpers.paths import ROOT

WINGS = ("builder.publish.writer", "builder.publish.rules", "builder.publish.lists",
         "builder.plan.plan", "builder.plan.identity", "builder.commands.publish")


def _loaded(modules: tuple[str, ...], probe: str) -> bool:
    code = f"import sys\nfor name in {modules!r}:\n    __import__(name)\nprint({probe!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip() == "True"


def test_the_publish_wing_and_the_plan_load_no_docker_sdk():
    assert not _loaded(WINGS, "docker")


def test_the_probe_sees_the_build_stage_load_it():
    assert _loaded(("builder.farm.runner",), "docker")
