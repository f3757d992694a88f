"""The CI recipes in docs/ci/ run commands that exist: every `python-image-builder` command
their scripts run is a task, with flags from that task's row of the option table, a value after
each flag that takes one; and they fan out as the README says (plan → build per platform →
publish of every runner's report)."""
from __future__ import annotations

import re
import shlex

import pytest
import yaml

from builder import cli
from builder.options import COMMON
from tests.helpers.paths import ROOT

RECIPES = {"github-actions.yml": "run", "gitlab-ci.yml": "script"}
BINARY = "python-image-builder"


def scripts(node, key: str) -> list[str]:
    """Every shell line under `key` (`run:` steps, `script:` lists) anywhere in the document."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name in (key, "before_script") and isinstance(value, (str, list)):
                found += [value] if isinstance(value, str) else list(value)
            else:
                found += scripts(value, key)
    elif isinstance(node, list):
        for item in node:
            found += scripts(item, key)
    return [line for text in found for line in text.splitlines()]


def commands(lines: list[str]) -> list[list[str]]:
    """The tool's command lines, as tokens; a bash array a line appends to (`reports+=(…)`)
    is spelled out where a command expands it (`"${reports[@]}"`)."""
    arrays: dict[str, list[str]] = {}
    found = []
    for line in lines:
        for name, items in re.findall(r"(\w+)\+=\(([^)]*)\)", line):
            arrays.setdefault(name, []).extend(shlex.split(items))
        for part in re.split(r"[;&|]+|\$\(|\)", line):
            tokens = shlex.split(part.split(">")[0]) if BINARY in part else []
            if tokens and tokens[0] == BINARY:
                found.append([token for t in tokens[1:]
                              for token in (arrays.get(_array(t), [t]) if _array(t) else [t])])
    return found


def _array(token: str) -> str | None:
    match = re.fullmatch(r"\$\{(\w+)\[@\]\}", token)
    return match.group(1) if match else None


def check(tokens: list[str]) -> list[str]:
    """What is wrong with one command line: an unknown task or flag, a value left out."""
    task, rest = tokens[0], tokens[1:]
    if task not in cli.ns.task_names:
        return [f"{task}: no such task"]
    options = {o.flag: o for o in cli.ns[task].options}
    problems, index = [], 0
    while index < len(rest):
        token = rest[index]
        index += 1
        if not token.startswith("--"):
            problems.append(f"{task}: {token!r} is no flag's value")
            continue
        option = options.get(token)
        if option is None:
            problems.append(f"{task}: no flag {token}")
        elif not isinstance(option.default, bool):
            if index == len(rest) or rest[index].startswith("--"):
                problems.append(f"{task}: {token} needs a value")
            index += 1
    return problems


@pytest.mark.parametrize("name, key", RECIPES.items())
def test_every_command_a_recipe_runs_exists_with_those_options(name, key):
    document = yaml.safe_load((ROOT / "docs" / "ci" / name).read_text())
    run = commands(scripts(document, key))

    assert [tokens[0] for tokens in run if tokens[0] != "generate"][:1] == ["plan"]
    assert {tokens[0] for tokens in run} >= {"plan", "build", "publish"}
    assert [problem for tokens in run for problem in check(tokens)] == []
    [build] = [tokens for tokens in run if tokens[0] == "build"]
    assert {"--platform", "--push", "--report"} <= set(build)
    [publish] = [tokens for tokens in run if tokens[0] == "publish"]
    assert publish.count("--from-report") >= 1


def test_the_check_finds_an_unknown_flag_a_missing_value_and_an_unknown_task():
    lines = ['reports+=(--from-reports "$r")',
             'python-image-builder publish --version "$V" "${reports[@]}" --registry',
             "python-image-builder bulid --version 1"]
    assert [problem for tokens in commands(lines) for problem in check(tokens)] == [
        "publish: no flag --from-reports", "publish: '$r' is no flag's value",
        "publish: --registry needs a value", "bulid: no such task"]
    assert COMMON[0].flag in {o.flag for o in cli.ns["build"].options}
