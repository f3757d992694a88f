"""smoke.yaml → checks, and the verdict on a check's run (pure); running them is tested in test_smoke_build.py."""
from __future__ import annotations


import pytest

from builder.model import smoke
from builder.model.errors import InputError
from tests.helpers.paths import ROOT


def test_the_python_family_checks_what_a_release_needs():
    checks = smoke.load(ROOT / "templates")
    names = [c.name for c in smoke.for_variant(checks, "slim-trixie", is_windows=False)]
    assert names == ["python-version", "ssl", "modules", "pip-version", "pip-offline-install",
                     "no-compiler", "no-package-cache"]
    assert "no-compiler" not in [c.name for c in smoke.for_variant(checks, "trixie", False)]
    assert smoke.for_variant(checks, "windowsservercore-ltsc2022", is_windows=True) == ()
    version_check = checks[0]
    assert version_check.expected("3.14.6") == "Python 3.14.6"


def test_a_family_without_the_file_has_no_checks(tmp_path):
    assert smoke.load(tmp_path) == ()


@pytest.mark.parametrize("text, line, message", [
    ("checks:\n  - name: a\n    run: true\n  - name: a\n    run: false\n", 4, "two checks are named 'a'"),
    ("checks:\n  - name: Bad Name\n    run: true\n", 2, "is not lower-case letters"),
    ("checks:\n  - name: a\n", 2, "missing field 'run'"),
    ("checks:\n  - name: a\n    run: true\n    when: always\n", 4, "unknown key 'when'"),
    ("checks:\n  - name: a\n    run: true\n    variants: ['slim;rm']\n", 4, "not a variant name"),
    ("checks: []\n", 1, "must not be empty"),
])
def test_bad_checks_name_the_line(tmp_path, text, line, message):
    (tmp_path / "smoke.yaml").write_text(text)
    with pytest.raises(InputError) as caught:
        smoke.load(tmp_path)
    assert f"smoke.yaml:{line}:" in str(caught.value) and message in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_verdict_reads_the_exit_code_then_the_output():
    check = smoke.Check(name="v", run="python3 --version", expect="Python {version}")
    assert smoke.verdict(check, "3.14.6", 0, "Python 3.14.6\n", 0.1).passed
    wrong = smoke.verdict(check, "3.14.6", 0, "Python 3.13.14\n", 0.1)
    assert not wrong.passed and "expected 'Python 3.14.6'" in wrong.problem
    failed = smoke.verdict(check, "3.14.6", 127, "sh: python3: not found", 0.1)
    assert not failed.passed and failed.problem == "exit code 127"
    assert not smoke.verdict(check, "3.14.6", None, "", 300).passed
    assert len(smoke.verdict(check, "1", 1, "x" * 10_000, 1).output) == smoke.OUTPUT_LIMIT
