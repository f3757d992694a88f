"""A YAML input file as plain values that remember their lines, and the checks on them.

Every problem is one InputError naming the file, the line and the field path
(``engines[1].url``, ``variants.buster.from``), so an editor or a CI log viewer can
jump straight to it.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from builder.model.errors import InputError

# Bounds that a hand-written input file never comes near, and that a hostile one (an alias
# "billion laughs", a self-referencing alias, thousands of nested brackets) hits at once.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64  # nested mappings and lists
MAX_VALUES = 50_000  # values after expanding aliases

Pattern = tuple[str, str]  # (a regex the whole text must match, what that means, for the message)
ONE_LINE: Pattern = (r".*\S.*", "one line of text")


def load(path: Path, *, syntax_error: str = "YAML syntax error") -> Doc:
    """Read `path`; its `root` is None when the file holds no document.

    `syntax_error` heads the message for text that is not YAML, in the caller's words.
    """
    # Every refusal names a line, so that an editor or a CI log viewer has one to jump to.
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read it: {error.strerror}", source=path) from None
    if len(data) > MAX_BYTES:
        raise InputError(f"the file is larger than {MAX_BYTES >> 20} MiB (this line passes the "
                         "bound); an input file this big is a mistake", source=path,
                         line=_line_at(data, MAX_BYTES))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError("cannot read it: not UTF-8 text", source=path,
                         line=_line_at(data, error.start)) from None
    try:
        _check_depth(text, path)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        # A reader error (a control character) has a position instead of a mark.
        line = mark.line + 1 if mark else _line_at(text, getattr(error, "position", 0))
        # Errors without a problem (a bad character) print several lines; the first says it.
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{syntax_error}: {problem}", source=path, line=line) from None
    return Doc(str(path), root)


def _line_at(data: bytes | str, offset: int) -> int:
    return data[:offset].count(b"\n" if isinstance(data, bytes) else "\n") + 1


class Doc:
    """A YAML document as plain values, remembering the line of every field.

    A field is named by its path from the root, a tuple of keys and list indexes:
    ``("engines", 1, "url")``.
    """

    def __init__(self, source: str, root: yaml.Node | None) -> None:
        self.source = source
        self.lines: dict[tuple, int] = {}
        self._values = 0
        self._open: set[int] = set()  # ids of the nodes being read: an alias to one is a cycle
        self.root = self._value(root, ()) if root is not None else None

    def error(self, where: tuple, message: str) -> InputError:
        return InputError(message, source=self.source, line=self.line(where),
                          field=_field_name(where) or None)

    def line(self, where: tuple) -> int | None:
        """The field's line, else (a field that is missing) its nearest parent's."""
        while where not in self.lines and where:
            where = where[:-1]
        return self.lines.get(where)

    def mapping(self, value, where: tuple, keys: dict[str, bool]) -> dict:
        """`value` as a mapping with only the `keys` named, those marked True present."""
        if not isinstance(value, dict):
            raise self.error(where, "expected a mapping of key: value")
        for key in value:
            if key not in keys:
                raise self.error(where + (key,), f"unknown key {key!r}; known: {', '.join(keys)}")
        for key, required in keys.items():
            if required and value.get(key) is None:
                raise self.error(where, f"missing field {key!r}")
        return value

    def sequence(self, value, where: tuple) -> list:
        """`value` as a list of at least one item."""
        if not isinstance(value, list):
            raise self.error(where, "expected a list, such as [a, b]")
        if not value:
            raise self.error(where, "must not be empty")
        return value

    def text(self, value, where: tuple, pattern: Pattern = ONE_LINE) -> str:
        """`value` as a single value matching `pattern`."""
        if not isinstance(value, str):
            raise self.error(where, "expected a single value, not a list or mapping")
        regex, meaning = pattern
        # ASCII: \d and \w must not admit other scripts' digits and letters (٣.٨.٠ is no version).
        if not re.fullmatch(regex, value, re.ASCII):
            raise self.error(where, f"{value!r} is not {meaning}")
        return value

    def _value(self, node: yaml.Node, where: tuple):
        self.lines[where] = node.start_mark.line + 1
        self._values += 1
        if self._values > MAX_VALUES:
            raise InputError(f"more than {MAX_VALUES} values once aliases are expanded; "
                             "an alias refers to a large part of the file too many times",
                             source=self.source, line=node.start_mark.line + 1,
                             field=_field_name(where) or None)
        if id(node) in self._open:
            raise InputError("an alias refers to the value that contains it", source=self.source,
                             line=node.start_mark.line + 1, field=_field_name(where) or None)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self._open.add(id(node))
            try:
                return self._collection(node, where)
            finally:
                self._open.discard(id(node))
        # Scalars stay the text that was written: 3.10 is not 3.1 and 19.3 not a float.
        if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
            return None
        return node.value

    def _collection(self, node: yaml.Node, where: tuple):
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InputError("keys must be plain words", source=self.source,
                                     line=key_node.start_mark.line + 1,
                                     field=_field_name(where) or None)
                key = key_node.value
                if key in result:
                    raise InputError(f"duplicate key {key!r}", source=self.source,
                                     line=key_node.start_mark.line + 1,
                                     field=_field_name(where + (key,)))
                result[key] = self._value(value_node, where + (key,))
                # A field is reported where its key is, the line an editor should jump to.
                self.lines[where + (key,)] = key_node.start_mark.line + 1
            return result
        return [self._value(item, where + (i,)) for i, item in enumerate(node.value)]


def _check_depth(text: str, path: Path) -> None:
    """Refuse deep nesting from the event stream, before the (recursive) composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"nested more than {MAX_DEPTH} levels deep", source=path,
                                 line=event.start_mark.line + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _field_name(where: tuple) -> str:
    text = ""
    for part in where:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not re.fullmatch(r"[\w.-]+", part, re.ASCII):
            text += f"[{part!r}]"  # a key of spaces or control characters, shown as written
        else:
            text += f".{part}" if text else part
    return text
