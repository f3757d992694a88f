"""The YAML reader both input files share: plain values, and every problem on one line."""
from __future__ import annotations

import pytest

from builder import yamldoc
from builder.errors import InputError

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
    (tmp_path / "latin1.yaml").write_bytes(b"a: caf\xe9\n")
    assert caught(yamldoc.load, tmp_path / "latin1.yaml") == \
        f"{tmp_path / 'latin1.yaml'}: cannot read it: not UTF-8 text"


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
