"""The floor plan of builder/, checked by reading the source: which wing may import which, which
modules stay pure (no Docker SDK, no requests), and how long a module or function may grow.

Each stage's core is data in, data out (the house rules). The checks read every module's
imports with ast, so an import inside a function counts as much as one at the top; one more
check imports the pure modules in a fresh interpreter where the client libraries are blocked.
Each check is also run on a synthetic tree with a forbidden import, to prove it can fail.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.imports import client_paths, oversized, read_package
from tests.helpers.paths import ROOT, TESTS

BUILDER = ROOT / "builder"

# Which wing may import which, besides itself. An entry is a wing or one module of it.
# The data flows down this table: a stage reads the values of the ones before it, never the
# machinery of the ones after it. commands compose the stages.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "model": frozenset(),
    "generate": frozenset({"model"}),
    "plan": frozenset({"model", "generate"}),
    "registry": frozenset({"model"}),
    "mirror": frozenset({"model"}),
    # Attestations: the SBOM, the provenance and the statements (pure), and their edges (the
    # image's inventory read on its engine, the manifests pushed, cosign).
    "attest": frozenset({"model", "registry"}),
    "farm": frozenset({"model", "plan", "registry", "attest"}),
    "publish": frozenset({"model", "plan", "registry", "attest.statements"}),
    # The pages read attestation manifests as the statements module writes them.
    "summary": frozenset({"model", "registry", "attest.statements", "attest.sbom",
                          "attest.image"}),
    "update": frozenset({"model", "generate", "mirror"}),
    "commands": frozenset({"model", "generate", "plan", "farm", "registry", "publish", "summary",
                           "mirror", "update", "options", "report", "attest"}),
    # The HTML report: what every stage reported, rendered last (a size as the pages print it).
    "report": frozenset({"model", "summary.page"}),
    # The command line: the table of options (pure), the program around the tasks, and the
    # tasks, each importing its command's Options and run.
    "options": frozenset({"model"}),
    "program": frozenset({"model"}),
    "cli": frozenset({"model", "options", "program", "commands"}),
    "__main__": frozenset({"cli"}),
}

# Modules (or whole wings) that must reach no client library, through any chain of imports.
PURE_WINGS = ("model", "generate", "plan", "options", "program")
PURE = ("summary.page", "update.index", "publish.lists", "publish.rules", "farm.pools",
        "registry.documents", "registry.errors", "mirror.layout", "mirror.deb822", "report.html",
        "report.markdown", "attest.inventory", "attest.sbom", "attest.provenance",
        "attest.statements", "attest.image", "attest.signatures", "publish.annotations")
BLOCKED = ("docker", "requests", "urllib3", "builder.registry.client", "builder.farm.engines",
           "builder.farm.engineapi")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def wing_of(module: str) -> str:
    """builder.plan.plan -> plan; the package builder itself -> ""."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


def allowed(importer: str, imported: str, table: dict[str, frozenset[str]]) -> bool:
    wing, target = wing_of(importer), imported.split(".", 1)[1] if "." in imported else ""
    if wing_of(imported) in ("", wing):
        return True
    return any(target == entry or target.startswith(entry + ".") for entry in table.get(wing, ()))


def wing_violations(root: Path, table: dict[str, frozenset[str]]) -> list[str]:
    modules = read_package(root)
    found = [f"{name}: in no wing of the table (give its wing a row)"
             for name in modules if wing_of(name) and wing_of(name) not in table]
    for name, module in modules.items():
        if wing_of(name) in table:
            found += [f"{name} imports {imported}: {wing_of(name)} may import only "
                      f"{', '.join(sorted(table[wing_of(name)])) or 'itself'}"
                      for imported in sorted(module.imports) if not allowed(name, imported, table)]
    return found


def pure_violations(root: Path, wings: tuple[str, ...], pure: tuple[str, ...]) -> list[str]:
    modules = read_package(root)
    starts = [name for name in modules if wing_of(name) in wings]
    starts += [f"{root.name}.{name}" for name in pure]
    missing = [f"{name}: no such module" for name in starts if name not in modules]
    return missing + [f"{name} reaches {path}" for name in starts if name in modules
                      for path in client_paths(modules, name)]


def test_each_wing_imports_only_the_wings_its_row_names():
    assert wing_violations(BUILDER, MAY_IMPORT) == []


def test_the_pure_modules_reach_no_client_library_through_any_import():
    assert pure_violations(BUILDER, PURE_WINGS, PURE) == []


def test_no_module_is_over_400_lines_and_no_function_over_60():
    assert oversized(BUILDER, MAX_MODULE_LINES, MAX_FUNCTION_LINES) == []


# --- the checks, proved on synthetic trees --------------------------------------------------

def _tree(directory: Path, files: dict[str, str], package: str = "builder") -> Path:
    """The package `package` under `directory` with each file's text; every folder a package."""
    root = directory / package
    for relative, text in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            (root / folder / "__init__.py").touch()
        path.write_text(text)
    return root


def test_the_wing_check_names_a_forbidden_import_in_any_form(tmp_path):
    root = _tree(tmp_path, {
        "model/a.py": "from builder.farm import runner\n",
        "model/b.py": "def later():\n    from ..plan.plan import plan\n",
        "plan/plan.py": "import builder.model.mirrors\nimport builder.mirror.fill\n",
        "farm/runner.py": "from builder.model import a\n",
        "model/mirrors.py": "", "mirror/fill.py": "",
        "odd/x.py": ""})

    assert wing_violations(root, MAY_IMPORT) == [
        "builder.odd: in no wing of the table (give its wing a row)",
        "builder.odd.x: in no wing of the table (give its wing a row)",
        "builder.model.a imports builder.farm.runner: model may import only itself",
        "builder.model.b imports builder.plan.plan: model may import only itself",
        "builder.plan.plan imports builder.mirror.fill: plan may import only generate, model"]


def test_the_pure_check_follows_imports_to_a_client_library(tmp_path):
    root = _tree(tmp_path, {
        "plan/plan.py": "from builder.model import builders\n",
        "model/builders.py": "from builder.registry.client import Client\n",
        "registry/client.py": "import requests\n",
        "summary/page.py": "",
        "summary/__init__.py": "def lazy():\n    import docker\n"})

    assert pure_violations(root, ("plan",), ("summary.page", "update.index")) == [
        "builder.update.index: no such module",
        "builder.plan.plan reaches builder.registry.client -> requests",
        "builder.summary.page reaches builder.summary -> docker"]


def test_the_size_check_names_a_long_module_and_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    root = _tree(tmp_path, {"model/long.py": "@decorated\ndef long():\n" + body + "\n" * 340,
                            "model/short.py": "def short():\n" + body[:-len("    x59 = 59\n")]})

    assert oversized(root, MAX_MODULE_LINES, MAX_FUNCTION_LINES) == [
        "builder.model.long: 402 lines", "builder.model.long.long (line 2): 62 lines"]


# --- the same rules, proved by importing ----------------------------------------------------

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


def _pure_modules() -> list[str]:
    modules = read_package(BUILDER)
    return sorted({name.removeprefix("builder.") for name in modules if wing_of(name) in PURE_WINGS}
                  | set(PURE))


def test_the_pure_modules_import_without_docker_requests_or_clients():
    failed = {module: done.stderr.strip().splitlines()[-1]
              for module in _pure_modules() if (done := _import(module)).returncode != 0}
    assert failed == {}


def test_the_block_catches_a_client_import():
    done = _import("publish.writer")  # the publish stage's edge uses the registry client
    assert done.returncode != 0 and "is blocked" in done.stderr


# --- the tests' own layout ------------------------------------------------------------------

def test_modules_under_tests_import_no_test_module():
    assert imports_of_test_modules(TESTS) == []


def test_bench_and_scripts_import_nothing_from_tests():
    assert imports_of_tests(ROOT / "bench", ROOT / "scripts") == []


def imports_of_test_modules(tests: Path) -> list[str]:
    """Imports of a test module (test_*.py, conftest.py) by any module under `tests`."""
    return [f"{name} imports {imported}" for name, module in read_package(tests).items()
            for imported in sorted(module.imports)
            if re.fullmatch(r"test_\w+|conftest", imported.rpartition(".")[2])]


def imports_of_tests(*folders: Path) -> list[str]:
    """Python files importing the tests package or a test module; lines putting tests/ on a
    Python path or running a module of it."""
    found = []
    for folder in folders:
        modules = read_package(folder)
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            if path.suffix == ".py":
                found += [f"{path.name}: imports {name}"
                          for name in sorted(modules[f"{folder.name}.{path.stem}"].libraries)
                          if name == "tests" or name.startswith("test_")]
            found += [f"{path.name}:{n}: {line.strip()}"
                      for n, line in enumerate(path.read_text().splitlines(), 1)
                      if re.search(r"PYTHONPATH=\S*tests|sys\.path.*tests|-m tests\.", line)]
    return found


def test_the_layout_checks_catch_a_test_module_import_and_a_bench_reaching_into_tests(tmp_path):
    tests = _tree(tmp_path, {"unit/test_a.py": "from tests.integration.test_b import helper\n",
                             "integration/test_b.py": "from ..helpers import paths\n",
                             "helpers/paths.py": ""}, package="tests")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "run.py").write_text("import sys\nsys.path[:0] = ['tests']\nfrom tests.helpers import paths\n")
    (bench / "run.sh").write_text("PYTHONPATH=tests python -m x\n")

    assert imports_of_test_modules(tests) == ["tests.unit.test_a imports tests.integration.test_b"]
    assert imports_of_tests(bench) == ["run.py: imports tests", "run.py:2: sys.path[:0] = ['tests']",
                                       "run.sh:1: PYTHONPATH=tests python -m x"]
