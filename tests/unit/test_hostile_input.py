"""Hostile input files: versions and builders files, well-formed or not.

Property (hypothesis): whatever the file holds, loading it either succeeds or raises one
InputError that starts with `file:LINE: ` (exit 2); never another exception, which the command
line would print as a traceback. The loaders are the ones every command runs first
(`versions.load`, `builders.parse`); a few hostile shapes also go through `invoke` itself.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from builder.model import builders
from builder.model import versions
from builder.model.errors import InputError
from builder.model.yamldoc import MAX_BYTES, MAX_DEPTH
from tests.helpers.paths import ROOT, TINY

EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Shapes a hand-written file never has, and an attacker's file might.
BOMB = ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
        "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi")))
FRAGMENTS = [
    BOMB, "a: &a [*a]\n", "&a [*a, *a]\n", "a: &a {b: *a}\n", "[" * (MAX_DEPTH + 5),
    "{" * 3000, "- " * 200 + "x\n", "!!python/object/apply:os.system ['true']\n",
    "? [complex, key]\n: value\n", "<<: *undefined\n", "x: !!binary aGVsbG8=\n", "%YAML 1.1\n---\n",
    "---\n---\n", "...\n", "\ufeff", "\x00", "\t", "key: value\n", "key: value\nkey: again\n",
    "- 3.8.0\n", "version: ٣.٨.٠\n", "version: 3.8.0\u200b\n", "platforms: [linux/sparc]\n",
    "url: tcp://10.0.0.7:2375\n", "url: 'unix:///x'\n", "concurrency: 0\n", "concurrency: -1\n",
    "concurrency: 99999999999999999999\n", "tls: {ca: /etc/shadow}\n", "tls: false\n",
    "name: " + "n" * 500 + "\n", "'unterminated\n", "\"\\x\"\n", ": :\n", "&anchor\n", "*alias\n",
]
SCALARS = st.one_of(
    st.sampled_from(["1.0.0", "3.14.6", "٣.٨.٠", "1.0", "", " ", "busybox", "busybox:latest",
                     "amd64", "arm32v7", "windows-amd64", "linux/arm/v7", "linux/sparc",
                     "10.0.17763", "tcp://10.0.0.7:2376", "unix:///var/run/docker.sock",
                     "ssh://u@h", "127.0.0.1:5000", "0", "1", "true", "false", "null", "~",
                     "a" * 300, "../../etc/passwd", "{{ 7 * 7 }}", "x\ny"]),
    st.text(max_size=12), st.integers(), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8) | SCALARS.map(str),
                                                 inner, max_size=4)), max_leaves=12)


def _mutated(document, draw) -> object:
    """`document` with a few of its values replaced, keys dropped or keys added."""
    if isinstance(document, dict):
        result = {}
        for key, value in document.items():
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue  # dropped
            result[key] = draw(VALUES) if choice == 1 else _mutated(value, draw)
        if draw(st.integers(0, 9)) == 0:
            result[draw(st.text(max_size=10))] = draw(VALUES)
        return result
    if isinstance(document, list):
        return [draw(VALUES) if draw(st.integers(0, 9)) == 0 else _mutated(v, draw)
                for v in document]
    return draw(VALUES) if draw(st.integers(0, 5)) == 0 else document


def _documents(valid_text: str):
    """Files near a valid one: its values mutated (dumped as YAML), or a hostile fragment
    spliced in at some line, or fragments alone."""
    valid = yaml.safe_load(valid_text)
    lines = valid_text.splitlines(keepends=True)

    @st.composite
    def near(draw) -> str:
        kind = draw(st.sampled_from(["mutated", "spliced", "fragments"]))
        if kind == "mutated":
            return yaml.safe_dump(_mutated(valid, draw), allow_unicode=True)
        if kind == "spliced":
            at = draw(st.integers(0, len(lines)))
            return "".join(lines[:at]) + draw(st.sampled_from(FRAGMENTS)) + "".join(lines[at:])
        return "".join(draw(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20),
                                     max_size=5)))

    return near()


BUILDERS = ("base-mirror: 127.0.0.1:5000\nengines:\n  - name: local\n"
            "    url: unix:///var/run/docker.sock\n    platforms: [amd64, i386]\n"
            "    concurrency: 2\n  - name: arm\n    url: tcp://10.0.0.7:2376\n"
            "    tls: {ca: ca.pem}\n    platforms: [arm64v8]\n  - name: win\n"
            "    url: ssh://builder@win\n    platforms: [windows-amd64]\n    os-version: 10.0.17763\n")


def loads_or_names_the_line(load, path: Path) -> None:
    try:
        load(path)
    except InputError as error:
        assert error.exit_code == 2
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(error)), str(error)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("hostile")
    shutil.copytree(TINY / "templates", work / "templates")
    (work / "ca.pem").write_text("not checked here\n")
    return work


@EXAMPLES
@given(text=_documents((TINY / "versions.yaml").read_text()))
def test_any_versions_file_loads_or_is_refused_with_file_and_line(workdir, text):
    path = workdir / "versions.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    loads_or_names_the_line(versions.load, path)


@EXAMPLES
@given(text=_documents(BUILDERS))
def test_any_builders_file_loads_or_is_refused_with_file_and_line(workdir, text):
    path = workdir / "builders.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    loads_or_names_the_line(lambda p: builders.parse(p, env={}), path)


@EXAMPLES
@given(data=st.binary(max_size=200))
def test_any_bytes_load_or_are_refused_with_file_and_line(workdir, data):
    for name, load in (("versions.yaml", versions.load),
                       ("builders.yaml", lambda p: builders.parse(p, env={}))):
        path = workdir / name
        path.write_bytes(data)
        loads_or_names_the_line(load, path)


@pytest.mark.parametrize("shape, message", [
    (BOMB.replace("a: &a", "engines: &a"), "more than 50000 values once aliases are expanded"),
    ("engines: &a [*a]\n", "an alias refers to the value that contains it"),
    ("engines: " + "[" * 3000 + "]" * 3000 + "\n", f"nested more than {MAX_DEPTH} levels deep"),
    ("engines: []\n" + "#" * 80 + "\n" + "# padding\n" * (MAX_BYTES // 10), "larger than 1 MiB"),
])
def test_a_hostile_builders_file_is_refused_by_the_command_with_exit_2(tmp_path, shape, message):
    path = tmp_path / "builders.yaml"
    path.write_text(shape)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "build", "--version", "1.0.0", "--dry-run",
         "--builders", str(path), "--versions", str(TINY / "versions.yaml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert re.match(rf"error: {re.escape(str(path))}:\d+: ", done.stderr), done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
