"""The command line: one task per command, for `python-image-builder`, `python -m builder` and,
in a checkout, `invoke` (whose tasks.py re-exports `ns`).

Each task's flags, defaults and help come from `builder.options`; the task only names the
command's Options and `run`, imported when the task runs, so listing and help load no
engine or registry client. `--quiet` and `--json` are every task's, handled here once.

Exit codes: 0 done; 1 some job, tag or check failed (the others went through); 2 bad input or
usage (nothing was done); 3 partial (`update`: a version bumped, its Windows installer not
found); 4 a source could not be fetched or read (`update`); 130 interrupted.
"""
from __future__ import annotations

import difflib
import inspect
import json
import os
import signal
import sys
from contextlib import contextmanager, redirect_stdout
from importlib import metadata
from typing import Callable, Iterator, TextIO

from invoke import Collection, Exit, Program, Task
from invoke.exceptions import ParseError
from invoke.parser import ParserContext

from builder import options as table
from builder.model.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BuilderError, InputError
from builder.model.report import Report, StageResult
from builder.model.streams import null
from builder.options import Option

BINARY = "python-image-builder"
HELP_FLAGS = ("--help", "-h")

Loader = Callable[[], tuple[type, Callable[..., StageResult]]]


class CommandTask(Task):
    """A task whose flags are its command's options: help from the table, not a dict that
    invoke empties as it reads it (the flags are read more than once: see `check_flags`)."""

    def __init__(self, load: Loader, options: tuple[Option, ...]) -> None:
        self.load, self.options = load, options + table.COMMON

        def body(context, **given):
            _execute(load.__name__, self.options, load, given)

        body.__name__, body.__doc__ = load.__name__, load.__doc__
        body.__signature__ = inspect.Signature(
            [inspect.Parameter("context", inspect.Parameter.POSITIONAL_ONLY)]
            + [_parameter(option) for option in self.options])
        super().__init__(body, auto_shortflags=False,  # no short flag means two things
                         iterable=[o.name for o in self.options if o.repeatable])

    def get_arguments(self, ignore_unknown_help: bool | None = None):
        arguments = super().get_arguments(ignore_unknown_help)
        described = {option.name: option.described for option in self.options}
        for argument in arguments:
            argument.help = described[argument.name]
        return arguments


def _parameter(option: Option) -> inspect.Parameter:
    """The task parameter invoke makes the flag from: the default's type is the flag's kind
    (a switch, an integer, a text); no default makes it positional."""
    if option.positional:
        default = inspect.Parameter.empty
    elif isinstance(option.default, (bool, int)):
        default = option.default
    else:
        default = None  # the table's default is applied by Option.value, after parsing
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default)


def command(options: tuple[Option, ...]) -> Callable[[Loader], CommandTask]:
    """The task of a command taking `options`; the decorated function names its Options
    and `run`, and its docstring is the task's help."""
    return lambda load: CommandTask(load, options)


# --- running a command ---------------------------------------------------------------------

def _execute(name: str, options: tuple[Option, ...], load: Loader, given: dict) -> None:
    """Run the command: the options as its Options, its output on the stream --quiet and
    --json choose, its result's exit code the task's. Errors are one line and their code."""
    quiet, as_json = given.pop("quiet"), given.pop("json")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    stdout, chosen = sys.stdout, None
    try:
        missing = [o.flag for o in options if o.required and given.get(o.name) in (None, [])]
        if missing:
            raise InputError(f"{' and '.join(missing)} required; see `{BINARY} {name} --help`",
                             field=name)
        fields = {o.field or o.name: value for o in options
                  if o.name in given and (value := o.value(given[o.name])) is not None}
        options_class, run = load()
        chosen = options_class(**fields)
        with _output(quiet, as_json) as out, redirect_stdout(out):
            result = run(chosen, out)
    except BuilderError as error:
        print(f"error: {error}", file=sys.stderr)
        if as_json:
            _print_json(stdout, name, chosen, None, error.exit_code, error=str(error))
        raise Exit(code=error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise Exit(code=EXIT_INTERRUPTED)
    code = result.exit_code
    if as_json:
        _print_json(stdout, name, chosen, result, code)
    elif quiet:
        print(verdict(name, _document(name, chosen, result, code)), file=stdout)
    if code:
        raise Exit(code=code)


@contextmanager
def _output(quiet: bool, as_json: bool) -> Iterator[TextIO]:
    """Where the command's own output goes: nowhere (--quiet), stderr (--json: stdout is the
    report's), else stdout. Errors and warnings go to stderr whatever the choice."""
    if quiet:
        yield null()
    else:
        yield sys.stderr if as_json else sys.stdout


def _document(name: str, chosen, result: StageResult | None, code: int) -> dict:
    report = Report(name, str(getattr(chosen, "version", "") or ""),
                    registry=getattr(chosen, "registry", None))
    if result is not None:
        result.add_to(report)
    return report.document(code)


def _print_json(stream: TextIO, name: str, chosen, result: StageResult | None, code: int,
                error: str | None = None) -> None:
    document = _document(name, chosen, result, code)
    if error is not None:
        document["error"] = error
    print(json.dumps(document, indent=2), file=stream)


def verdict(name: str, document: dict) -> str:
    """One line saying how the run went: `release: ok; build ok (built 2, unchanged 12); …`,
    or where it stopped and why: `build: failed (exit 1): 2 job(s) failed`."""
    code = document["exit_code"]
    stages = document["stages"]
    head = f"{name}: " + ("ok" if code == 0 else f"failed (exit {code})")
    head += _details(stages[name]) if name in stages else ""
    others = [f"{stage} {entry['status']}{_details(entry)}"
              for stage, entry in stages.items() if stage != name]
    return "; ".join([head, *others])


def _details(entry: dict) -> str:
    """A stage entry's reason when it failed, else its counts: `: why`, ` (built 2, …)`."""
    if entry["status"] == "failed" and entry.get("reason"):
        return f": {entry['reason']}"
    counts = ", ".join(f"{key} {value}" for key, value in entry.items()
                       if type(value) is int and key != "seconds")
    return f" ({counts})" if counts else ""


def _interrupt(signum, frame) -> None:
    """SIGTERM (a pipeline cancelling the job) stops a run as Ctrl-C does: running steps are
    killed and the report says which stage was interrupted. A second signal exits at once."""
    signal.signal(signal.SIGINT, _exit_at_once)
    signal.signal(signal.SIGTERM, _exit_at_once)
    # os.write: a handler that used print could land inside another print to stderr.
    os.write(2, f"{signal.Signals(signum).name}: stopping the running jobs; "
                "a second signal exits at once\n".encode())
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit_at_once(signum, frame) -> None:
    os.write(2, f"{signal.Signals(signum).name} again: exiting at once\n".encode())
    os._exit(EXIT_INTERRUPTED)


# --- parsing -------------------------------------------------------------------------------

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


def _version() -> str:
    try:
        return metadata.version(BINARY)
    except metadata.PackageNotFoundError:  # a checkout on the path, not installed
        return "unknown"


# --- the commands ---------------------------------------------------------------------------

@command(table.GENERATE)
def generate():
    """Render the Dockerfiles from the versions file and the templates."""
    from builder.commands import generate as chosen
    return chosen.GenerateOptions, chosen.run


@command(table.LIBRARY)
def library():
    """Print the official-images style library file: tags, architectures, commit, directory."""
    from builder.commands import library as chosen
    return chosen.LibraryOptions, chosen.run


@command(table.BUILD)
def build():
    """Build (and push) the per-arch images of a version on the configured engines, in parallel."""
    from builder.farm import runner as chosen
    return chosen.BuildOptions, chosen.run


@command(table.PUBLISH)
def publish():
    """Write a manifest list (or OCI index) for every tag and shared tag of a version.

    It lists the per-arch images --from-report's build pushed, else those whose build hash is
    the plan's."""
    from builder.publish import writer as chosen
    return chosen.PublishOptions, chosen.run


@command(table.RELEASE)
def release():
    """generate --check → build → push → publish → summary pages; stops at the first failing stage."""
    from builder.commands import release as chosen
    return chosen.ReleaseOptions, chosen.run


@command(table.SUMMARY)
def summary():
    """Print the summary page of an image as its registry serves it now (repo-info's format).

    Exit 1 when the registry has no such tag."""
    from builder.commands import summary as chosen
    return chosen.SummaryOptions, chosen.run


@command(table.REGISTRY_COMMAND)
def registry():
    """Start a local registry on 127.0.0.1 to release to (or find one running there)."""
    from builder.commands import registry as chosen
    return chosen.RegistryOptions, chosen.run


@command(table.MIRROR)
def mirror():
    """Fill the source mirror (verified) and the Debian bases, and serve them for offline builds."""
    from builder.commands import mirror as chosen
    return chosen.MirrorOptions, chosen.run


@command(table.UPDATE)
def update():
    """Bump each series to its newest release, verified; rewrite the versions file; regenerate.

    Exit 1 with --check: a newer release exists; 3: partial (a Windows installer was
    missing); 4: the source could not be fetched or read."""
    from builder.commands import update as chosen
    return chosen.UpdateOptions, chosen.run


ns = Collection(generate, library, build, publish, release, summary, registry, mirror, update)


def main() -> None:
    CommandLine(namespace=ns, name=BINARY, binary=BINARY, version=_version()).run()
