"""Reading a package's structure from its source (ast), without importing it: which module imports
which, which ones reach for a client library, and how long modules and functions are. The
layering tests run these on builder/ and, to prove each check can fail, on synthetic trees."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

# The libraries that talk to engines and registries: a pure module must not reach them.
CLIENT_LIBRARIES = frozenset({"docker", "requests", "urllib3", "paramiko"})


@dataclass
class Module:
    name: str  # dotted, e.g. builder.plan.plan; a package is named by its folder
    path: Path
    imports: set[str] = field(default_factory=set)  # modules of the same package, resolved
    libraries: set[str] = field(default_factory=set)  # top-level names of everything else


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, package: str) -> list[tuple[str, ...]]:
    """What an import statement loads, each as its candidates, most specific first: for
    `from a import b`, (a.b, a), since b may be a module or a name in a."""
    if isinstance(node, ast.Import):
        return [(alias.name,) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the importing module's package upwards
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [(f"{base}.{alias.name}", base) for alias in node.names]


def _resolve(candidates: tuple[str, ...], modules: set[str]) -> str:
    """The first candidate that is a module, else the nearest package above the last."""
    found = next((c for c in candidates if c in modules), candidates[-1])
    while found not in modules and "." in found:
        found = found.rpartition(".")[0]
    return found


def read_package(root: Path) -> dict[str, Module]:
    """Every module under `root` (a package folder) with what it imports, at any depth of the
    file: an import inside a function or under TYPE_CHECKING is still an arrow."""
    paths = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    modules = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        module = Module(name, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for candidates in _imported(node, package):
                if candidates[-1].split(".")[0] != root.name:
                    module.libraries.add(candidates[-1].split(".")[0])
                elif (imported := _resolve(candidates, set(paths))) != name:
                    module.imports.add(imported)
        modules[name] = module
    return modules


def reached(modules: dict[str, Module], start: str) -> set[str]:
    """The modules importing `start` loads: its parent packages, its imports, theirs, and so on."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(modules[name].imports)
    return seen


def client_paths(modules: dict[str, Module], start: str) -> list[str]:
    """For each module `start` reaches that uses a client library: "a -> docker"."""
    return sorted(f"{name} -> {', '.join(sorted(modules[name].libraries & CLIENT_LIBRARIES))}"
                  for name in reached(modules, start) if modules[name].libraries & CLIENT_LIBRARIES)


def oversized(root: Path, max_module: int, max_function: int) -> list[str]:
    """Modules over `max_module` lines and functions over `max_function` (decorators to last line)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > max_module:
            found.append(f"{module_name(root, path)}: {lines} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - first + 1
                if length > max_function:
                    found.append(f"{module_name(root, path)}.{node.name} (line {node.lineno}): {length} lines")
    return found
