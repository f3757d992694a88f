"""The YAML reader both input files share: plain values, and every problem on one line."""
from __future__ import annotations

import pytest

from builder.model import yamldoc
from builder.model.errors import InputError

TEXT = """\
name: demo
engines:
  - url: unix:///x
    sizes: [3.10, 19.3]
  - {url: 'tcp://h:2376', tls:
      {ca: ca.pem}}
"""


def load(tmp_path, text, **kwargs):
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    return yamldoc.load(path, **kwargs)


def caught(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_plain_values_with_scalars_as_written(tmp_path):
    doc = load(tmp_path, TEXT)
    assert doc.root["engines"][0] == {"url": "unix:///x", "sizes": ["3.10", "19.3"]}
    assert load(tmp_path, "a:\nb: ~\n").root == {"a": None, "b": None}
    assert load(tmp_path, "# nothing\n").root is None


def test_a_field_is_reported_on_its_key_line_by_its_path(tmp_path):
    doc = load(tmp_path, TEXT)
    path = tmp_path / "file.yaml"
    assert str(doc.error(("engines", 1, "tls"), "bad")) == f"{path}:5: engines[1].tls: bad"
    assert doc.line(("engines", 1, "tls", "ca")) == 6
    assert doc.line(("engines", 0, "sizes", 1)) == 4
    # A missing field falls back to its parent's line.
    assert doc.line(("engines", 0, "platforms")) == 3


def test_duplicate_keys_and_syntax_errors(tmp_path):
    path = tmp_path / "file.yaml"
    assert caught(load, tmp_path, "a: 1\nb:\n  c: 2\n  c: 3\n") == \
        f"{path}:4: b.c: duplicate key 'c'"
    assert caught(load, tmp_path, "a: [1\n").startswith(f"{path}:2: YAML syntax error: ")
    assert caught(load, tmp_path, "a: [1\n", syntax_error="not valid YAML").startswith(
        f"{path}:2: not valid YAML: ")


def test_unreadable_files(tmp_path):
    assert caught(yamldoc.load, tmp_path / "nope.yaml").startswith(
        f"{tmp_path / 'nope.yaml'}: cannot read it: ")
    (tmp_path / "latin1.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    assert caught(yamldoc.load, tmp_path / "latin1.yaml") == \
        f"{tmp_path / 'latin1.yaml'}:2: cannot read it: not UTF-8 text"


def test_the_shared_checks(tmp_path):
    doc = load(tmp_path, TEXT)
    path = tmp_path / "file.yaml"
    engine = doc.root["engines"][0]
    assert doc.mapping(engine, ("engines", 0), {"url": True, "sizes": False}) is engine
    assert caught(doc.mapping, engine, ("engines", 0), {"url": True}) == \
        f"{path}:4: engines[0].sizes: unknown key 'sizes'; known: url"
    assert caught(doc.mapping, engine, ("engines", 0), {"url": True, "sizes": True,
                                                        "name": True}) == \
        f"{path}:3: engines[0]: missing field 'name'"
    assert caught(doc.mapping, doc.root["name"], ("name",), {}) == \
        f"{path}:1: name: expected a mapping of key: value"
    assert caught(doc.sequence, [], ("engines",)) == f"{path}:2: engines: must not be empty"
    assert caught(doc.sequence, "x", ("name",)) == \
        f"{path}:1: name: expected a list, such as [a, b]"
    assert doc.text("demo", ("name",), (r"[a-z]+", "a word")) == "demo"
    assert caught(doc.text, "Demo", ("name",), (r"[a-z]+", "a word")) == \
        f"{path}:1: name: 'Demo' is not a word"
    assert caught(doc.text, engine, ("engines", 0)) == \
        f"{path}:3: engines[0]: expected a single value, not a list or mapping"
    assert caught(doc.text, " ", ("name",)) == f"{path}:1: name: ' ' is not one line of text"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
    f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))  # 9**9 values once expanded, from under 700 bytes


@pytest.mark.parametrize("text, line, message", [
    (BOMB, None, "values once aliases are expanded"),
    ("a: &x [1, *x]\n", 1, "an alias refers to the value that contains it"),
    ("a: &x {b: {c: *x}}\n", 1, "an alias refers to the value that contains it"),
    ("a: " + "[" * 3000 + "]" * 3000 + "\n", 1, "nested more than 64 levels deep"),
    ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80)), 65, "nested more than 64"),
])
def test_hostile_yaml_is_refused_on_one_line(tmp_path, text, line, message):
    assert len(text) < 30_000
    error = caught(load, tmp_path, text)
    assert message in error and error.startswith(str(tmp_path / "file.yaml") + (f":{line}:" if line else ""))


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    error = caught(load, tmp_path, "# " + "x" * yamldoc.MAX_BYTES + "\n")
    assert "larger than 1 MiB" in error


def test_shared_anchors_within_the_budget_still_load(tmp_path):
    doc = load(tmp_path, "p: &p [amd64, i386]\na: {platforms: *p}\nb: {platforms: *p}\n")
    assert doc.root["b"] == {"platforms": ["amd64", "i386"]}


def test_patterns_admit_ascii_digits_only(tmp_path):
    doc = load(tmp_path, "version: \u0663.\u0668.\u0660\nfull: \uff13.8.0\n")
    for key in ("version", "full"):
        with pytest.raises(InputError, match="is not a release"):
            doc.text(doc.root[key], (key,), (r"\d+\.\d+\.\d+", "a release"))
