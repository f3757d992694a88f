"""The pure modules import no Docker SDK, no requests and no client module.

Each stage's core is data in, data out (the house rules); this imports those modules in a
fresh interpreter where `docker`, `requests` and the client modules cannot be imported, so a
pure module that grows such an import fails here, naming it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = ("model.versions", "generate.render", "model.tags", "generate.library", "model.naming",
        "plan.plan", "publish.lists", "publish.rules", "summary.page", "model.platforms",
        "model.reference", "farm.builders", "plan.dockerfile", "model.report", "model.errors",
        "model.smoke", "mirror.layout", "mirror.config", "update.index", "farm.pools",
        "registry.retry", "registry.documents", "report.html", "report.markdown")
BLOCKED = ("docker", "requests", "urllib3", "builder.registry.client", "builder.farm.engines",
           "builder.farm.engineapi")

_PROBE = """
import importlib, importlib.abc, sys

BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is blocked: a pure module must not import it")
        return None

sys.meta_path.insert(0, Block())
importlib.import_module("builder." + {module!r})
"""


def _import(module: str, blocked=BLOCKED) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE.format(module=module, blocked=blocked)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_pure_modules_import_without_docker_requests_or_clients():
    failed = {module: done.stderr.strip().splitlines()[-1]
              for module in PURE if (done := _import(module)).returncode != 0}
    assert failed == {}


def test_the_block_catches_a_client_import():
    done = _import("publish.writer")  # the publish stage's edge uses the registry client
    assert done.returncode != 0 and "is blocked" in done.stderr
