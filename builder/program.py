"""The program around the tasks: invoke's `Program`, with usage errors that exit 2 and say what
to fix, and `TASK --help` for every task.

invoke's parser takes a flag given where a value is due for that value (`summary --help` asks
for the page of an image named "--help"; `--verison 3.8.0` fills a positional argument and
then fails on "3.8.0"), and exits 1 on what it cannot parse. `check_flags` reads the command
line first.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator

from invoke import Exit, Program
from invoke.exceptions import ParseError
from invoke.parser import ParserContext

from builder.model.errors import EXIT_BAD_INPUT

BINARY = "python-image-builder"
HELP_FLAGS = ("--help", "-h")


def check_flags(tokens: list[str], tasks: dict[str, ParserContext],
                core: ParserContext) -> str | None:
    """The task whose help `tokens` ask for (`build --version 3.8 --help`), else None.

    Read before invoke's parser, which would take a flag given where a value is due for that
    value (`--help` for summary's image, `--verison` for a positional argument): a flag the
    task (or, before any task, the program) does not have, a word that is no task, a number
    that is none and a positional argument left out are usage errors that say which.
    """
    context, pending, waiting = None, [], None
    for token in tokens:
        if token == "--":
            break
        if waiting is not None:
            _check_value(context, waiting, token)
            waiting = None
        elif token.startswith("-") and len(token) > 1:
            flag, equals, value = token.partition("=")
            if context is not None and flag in HELP_FLAGS:
                return context.name
            known = context or core
            argument = known.flags.get(known.inverse_flags.get(flag, flag))
            if argument is None:
                raise ParseError(_unknown(flag, [f for f in known.flags if f.startswith("--")],
                                          context, "flag"))
            if equals:
                _check_value(context, argument, value)
            elif argument.takes_value and not argument.optional:
                waiting = argument
            pending = [name for name in pending if name != argument.name]
        elif pending:
            pending.pop(0)
        elif token in tasks:
            _require(context, pending)
            context, pending = tasks[token], [a.name for a in tasks[token].positional_args]
        elif context is None:
            raise ParseError(_unknown(token, list(tasks), None, "command"))
        else:
            raise ParseError(f"{context.name}: {token!r} is no command, nor the value of a flag "
                             f"(`{BINARY} {context.name} --help` lists its flags)")
    _require(context, pending)
    return None


def _check_value(task: ParserContext | None, argument, value: str) -> None:
    if argument.kind is int and not value.lstrip("-").isdigit():
        where = f"{task.name}: " if task else ""
        raise ParseError(f"{where}--{argument.names[0]} takes a whole number, not {value!r}")


def _unknown(word: str, choices: list[str], task: ParserContext | None, what: str) -> str:
    where = f"{task.name}: " if task else ""
    nearest = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {nearest[0]}?" if nearest else ""
    listed = f"{BINARY} {task.name} --help" if task else f"{BINARY} --help"
    return f"{where}unknown {what} {word}{hint} (`{listed}` lists them)"


def _require(task: ParserContext | None, pending: list[str]) -> None:
    if task is not None and pending:
        names = " and ".join(name.replace("_", "-").upper() for name in pending)
        raise ParseError(f"{task.name}: {names} required: `{BINARY} {task.name} {names}`")


@contextmanager
def _usage() -> Iterator[None]:
    """A command line invoke cannot parse is bad input: exit 2, not invoke's 1."""
    try:
        yield
    except ParseError as error:
        raise Exit(f"error: {error}", code=EXIT_BAD_INPUT) from None


class CommandLine(Program):
    """invoke's Program with usage errors that exit 2 and name the flag, and `TASK --help`
    for every task."""

    def parse_core(self, argv) -> None:
        with _usage():
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        with _usage():
            tasks = {context.name: context for context in self.collection.to_contexts()}
            asked = check_flags(self.core.unparsed, tasks, self.initial_context)
            if asked:
                self.core.unparsed = []  # whatever else was given, the help is the answer
            super().parse_tasks()
            if asked:
                self.args.help.value = asked

    def parse_cleanup(self) -> None:
        with _usage():
            super().parse_cleanup()
