"""Test oracle: Dockerfile text → the image history the classic builder records for it,
as repo-info pages display it (one `INSTRUCTION text` line per entry).

Follows the builder's parser and commit messages (docs/classic-builder.md, "History rules"):
continuation lines are joined byte for byte, comment lines vanish, FROM adds no entry,
`ENV K V` is recorded as `ENV K=V` with $VAR / ${VAR} expanded from the environment so
far, RUN keeps its joined shell text, CMD is shown with Go's %q and SHELL with %v.
Only the instructions our Dockerfiles use are supported; anything else raises, so the
oracle can never silently pass on text it does not understand.
"""
from __future__ import annotations

import json
import re

LINUX_PARENT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

_CONTINUATION = re.compile(r"\\[ \t]*$")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, after the parser's line joining."""
    result = []
    lines = iter(text.splitlines())
    for line in lines:
        if _is_comment(line) or not line.strip():
            continue
        joined = line.lstrip(" \t")
        while _CONTINUATION.search(joined):
            joined = _CONTINUATION.sub("", joined)
            for following in lines:
                if _is_comment(following) or not following.strip():
                    continue
                joined += following
                break
            else:
                break
        keyword, _, arguments = joined.strip().partition(" ")
        result.append((keyword.upper(), arguments.lstrip(" \t")))
    return result


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def history(text: str, parent_env: dict[str, str] | None = None) -> list[str]:
    """The history entries the Dockerfile adds on top of its parent, oldest first."""
    env = dict(parent_env or {})
    entries = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            continue
        if keyword == "ENV":
            key, value = _env_pair(arguments)
            value = _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)
            env[key] = value
            entries.append(f"ENV {key}={value}")
        elif keyword == "RUN":
            if arguments.startswith("["):
                raise ValueError(f"exec-form RUN is not supported by this oracle: {arguments}")
            entries.append(f"RUN {arguments}")
        elif keyword == "CMD":
            entries.append("CMD " + _go_quoted(json.loads(arguments)))
        elif keyword == "SHELL":
            entries.append("SHELL [" + " ".join(json.loads(arguments)) + "]")
        else:
            raise ValueError(f"instruction {keyword} is not supported by this oracle")
    return entries


def _env_pair(arguments: str) -> tuple[str, str]:
    key, _, value = arguments.partition(" ")
    if "=" in key or not value.strip():
        raise ValueError(f"only the `ENV KEY value` form is supported: {arguments}")
    if any(c in value for c in "\"'\\"):
        raise ValueError(f"quotes and escapes in ENV values are not supported: {arguments}")
    return key, value.lstrip(" \t")


def _go_quoted(items: list[str]) -> str:
    """Go's fmt %q of a []string: ["a" "b"], each element strconv.Quote'd."""
    quoted = []
    for item in items:
        if any(ord(c) < 0x20 or ord(c) >= 0x7F for c in item):
            raise ValueError(f"non-printable CMD element not supported: {item!r}")
        quoted.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "[" + " ".join(quoted) + "]"
