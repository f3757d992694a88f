"""Stage generate, the edge: the rendered Dockerfiles against the tree on disk.

`check` says how the tree differs from what `render` gives; `generate` brings it in line,
writing only after every file rendered.
"""
from __future__ import annotations

import os
from pathlib import Path

from builder.generate.render import render
from builder.model.files import write_atomic
from builder.model.versions import Family


def _owned_dockerfiles(family: Family, out_dir: Path) -> set[Path]:
    """Dockerfiles already on disk under the family's series directories."""
    found = set()
    for series in {v.series for v in family.versions}:
        root = out_dir / series
        if root.is_dir():
            found |= {p.relative_to(out_dir) for p in root.rglob("Dockerfile") if p.is_file()}
    return found


def _tree_files(family: Family, out_dir: Path) -> set[Path]:
    """Every file and symlink under the family's series directories; symlinks not followed."""
    found = set()
    for series in {v.series for v in family.versions}:
        for top, directories, files in os.walk(out_dir / series):
            linked = [d for d in directories if (Path(top) / d).is_symlink()]
            found |= {(Path(top) / name).relative_to(out_dir) for name in files + linked}
    return found


def check(family: Family, out_dir: str | Path,
          rendered: dict[Path, str] | None = None) -> list[str]:
    """Every stale, missing or extra file under out_dir, as one line each; empty if in sync.

    The series directories hold what generate writes and nothing else: any other file or
    symlink there is extra (a build sends only generated files, but a tree that holds more
    is not the one committed).
    `rendered` is `render(family)` when the caller has it already.
    """
    out_dir = Path(out_dir)
    wanted = render(family) if rendered is None else rendered
    problems = []
    for path, text in wanted.items():
        target = out_dir / path
        if target.is_symlink():
            problems.append(f"{path}: a symlink (generate writes a file here)")
            continue
        if not target.is_file():
            problems.append(f"{path}: missing")
            continue
        have = target.read_text(encoding="utf-8")
        if have != text:
            problems.append(f"{path}: stale (first difference at line {_first_difference(have, text)})")
    for path in sorted(_tree_files(family, out_dir) - wanted.keys()):
        if path.name == "Dockerfile" and not (out_dir / path).is_symlink():
            problems.append(f"{path}: extra (no variant in {family.source.name} produces it)")
        else:
            problems.append(f"{path}: extra (not written by generate; remove it)")
    return problems


def _first_difference(have: str, want: str) -> int:
    have_lines, want_lines = have.splitlines(), want.splitlines()
    for number, (a, b) in enumerate(zip(have_lines, want_lines), start=1):
        if a != b:
            return number
    return min(len(have_lines), len(want_lines)) + 1


def generate(family: Family, out_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """Bring out_dir in line with the family: (written, removed) relative paths.

    Everything is rendered before the first write, so a template error leaves the
    tree untouched; each file is replaced atomically, so no reader sees half a file.
    """
    out_dir = Path(out_dir)
    wanted = render(family)
    written = []
    for path, text in wanted.items():
        target = out_dir / path
        if (not target.is_symlink() and target.is_file()
                and target.read_text(encoding="utf-8") == text):
            continue
        write_atomic(target, text)  # a rename: a symlink there is replaced, its target untouched
        written.append(path)
    removed = sorted(_owned_dockerfiles(family, out_dir) - wanted.keys())
    for path in removed:
        (out_dir / path).unlink()
        _prune_empty(out_dir, (out_dir / path).parent)
    return written, removed


def _prune_empty(out_dir: Path, directory: Path) -> None:
    while directory != out_dir and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
