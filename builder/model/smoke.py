"""Smoke tests: the checks each freshly built image must pass before it is pushed, as data.

The checks live in ``smoke.yaml`` beside the templates, so a user adds one by adding an entry::

    checks:
      - name: python-version
        run: python3 --version            # run by /bin/sh -c in the image, network disabled
        expect: "Python {version}"        # optional: the whole output, stripped; {version} is the image's
      - name: no-compiler
        variants: ["slim-*", "alpine*"]   # optional: fnmatch patterns of variant names (default: all)
        run: "! command -v gcc"

A check passes when its command exits 0 and, with ``expect``, prints exactly that. Checks run
only in Linux images: there is no Windows engine to run Windows ones here.
This module is pure (values, the loader and the verdict); `engineapi.run_checks` runs them.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from builder.model import yamldoc
from builder.model.errors import InputError

FILE_NAME = "smoke.yaml"
_NAME = (r"[a-z0-9][a-z0-9-]*", "lower-case letters, digits and dashes, such as python-version")
_PATTERN = (r"[A-Za-z0-9*?\[\]._-]+", "a variant name or fnmatch pattern such as slim-*")
_TOP_KEYS = {"checks": True}
_CHECK_KEYS = {"name": True, "run": True, "expect": False, "variants": False}
OUTPUT_LIMIT = 2000  # characters of a check's output kept for the log line and the report


@dataclass(frozen=True)
class Check:
    name: str
    run: str  # a /bin/sh -c script
    expect: str | None = None  # the exact (stripped) output, with {version} filled in
    variants: tuple[str, ...] = ("*",)  # fnmatch patterns of the variant names it applies to

    def applies_to(self, variant_name: str) -> bool:
        return any(fnmatch.fnmatchcase(variant_name, p) for p in self.variants)

    def expected(self, version: str) -> str | None:
        return None if self.expect is None else self.expect.replace("{version}", version)


@dataclass(frozen=True)
class Outcome:
    """What one check did in one image."""
    name: str
    passed: bool
    exit_code: int | None  # None: it never finished (timeout, engine error)
    output: str  # stdout and stderr together, at most OUTPUT_LIMIT characters from the end
    seconds: float
    problem: str = ""  # why it failed, in words

    def as_dict(self) -> dict:
        return {"name": self.name, "result": "passed" if self.passed else "failed",
                "exit_code": self.exit_code, "seconds": round(self.seconds, 2),
                "problem": self.problem, "output": self.output}


def load(templates_dir: Path) -> tuple[Check, ...]:
    """The checks of `templates_dir/smoke.yaml`; none when the family has no such file."""
    path = Path(templates_dir) / FILE_NAME
    if not path.is_file():
        return ()
    doc = yamldoc.load(path)
    if doc.root is None:
        raise InputError("the file is empty; list checks: under it, or delete it", source=path)
    top = doc.mapping(doc.root, (), _TOP_KEYS)
    checks, names = [], set()
    for i, entry in enumerate(doc.sequence(top["checks"], ("checks",))):
        where = ("checks", i)
        fields = doc.mapping(entry, where, _CHECK_KEYS)
        name = doc.text(fields["name"], where + ("name",), _NAME)
        if name in names:
            raise doc.error(where + ("name",), f"two checks are named {name!r}")
        names.add(name)
        run = fields["run"]
        if not isinstance(run, str) or not run.strip():
            raise doc.error(where + ("run",), "expected a shell command")
        expect = fields.get("expect")
        if expect is not None:
            expect = doc.text(expect, where + ("expect",))
        variants = ("*",)
        if fields.get("variants") is not None:
            variants = tuple(doc.text(p, where + ("variants", j), _PATTERN) for j, p in
                             enumerate(doc.sequence(fields["variants"], where + ("variants",))))
        checks.append(Check(name=name, run=run, expect=expect, variants=variants))
    return tuple(checks)


def for_variant(checks: tuple[Check, ...], variant_name: str, is_windows: bool) -> tuple[Check, ...]:
    if is_windows:
        return ()
    return tuple(c for c in checks if c.applies_to(variant_name))


def verdict(check: Check, version: str, exit_code: int | None, output: str,
            seconds: float) -> Outcome:
    """Judge one run of `check`: its exit code and its output against `expect`."""
    kept = output[-OUTPUT_LIMIT:]
    if exit_code is None:
        return Outcome(check.name, False, None, kept, seconds, "it did not finish")
    if exit_code != 0:
        return Outcome(check.name, False, exit_code, kept, seconds, f"exit code {exit_code}")
    wanted = check.expected(version)
    if wanted is not None and output.strip() != wanted:
        return Outcome(check.name, False, exit_code, kept, seconds,
                       f"expected {wanted!r}, got {output.strip()[:200]!r}")
    return Outcome(check.name, True, exit_code, kept, seconds)

