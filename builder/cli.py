"""The command line: one task per command, for `python-image-builder`, `python -m builder` and,
in a checkout, `invoke` (whose tasks.py re-exports `ns`).

Each task's flags, defaults and help come from `builder.options`; the task only names the
command's Options and `run`, imported when the task runs, so listing and help load no
engine or registry client. `--quiet` and `--json` are every task's, handled here once.

Exit codes: 0 done; 1 some job, tag or check failed (the others went through); 2 bad input or
usage (nothing was done); 3 partial (`update`: a version bumped, its Windows installer not
found); 4 a source could not be fetched or read (`update`), or a registry a build needs
did not answer before it started (build, release: nothing was built); 130 interrupted.
"""
from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import time
from contextlib import redirect_stdout
from importlib import metadata
from typing import Callable, TextIO

from invoke import Collection, Exit, Task

from builder import options as table
from builder.model import retry
from builder.model.errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL,
                                  BuilderError, InputError)
from builder.model.report import Report, StageResult
from builder.model.streams import null
from builder.options import Option
from builder.program import BINARY, CommandLine

Loader = Callable[[], tuple[type, Callable[..., StageResult]]]


class CommandTask(Task):
    """A task whose flags are its command's options: help from the table, not a dict that
    invoke empties as it reads it (the flags are read more than once: see builder.program)."""

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
    stdout, chosen, began = sys.stdout, None, time.time()
    try:
        missing = [o.flag for o in options if o.required and given.get(o.name) in (None, [])]
        if missing:
            raise InputError(f"{' and '.join(missing)} required; see `{BINARY} {name} --help`",
                             field=name)
        fields = {o.field or o.name: value for o in options
                  if o.name in given and (value := o.value(given[o.name])) is not None}
        options_class, run = load()
        chosen = options_class(**fields)
        out = _output(quiet, as_json)
        with redirect_stdout(out):  # what an edge prints itself goes where the command's goes
            result = run(chosen, out)
    except BuilderError as error:
        print(f"error: {error}", file=sys.stderr)
        if as_json:
            _print_json(stdout, name, chosen, None, error.exit_code, began, error=str(error))
        raise Exit(code=error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise Exit(code=EXIT_INTERRUPTED)
    code = result.exit_code
    if as_json:
        _print_json(stdout, name, chosen, result, code, began)
    elif quiet or name in ENDS_WITH_VERDICT:
        print(verdict(name, _document(name, chosen, result, code, began)), file=stdout)
    if code:
        raise Exit(code=code)


def _output(quiet: bool, as_json: bool) -> TextIO:
    """Where the command's own output goes: nowhere (--quiet), stderr (--json: stdout is the
    report's), else stdout. Errors and warnings go to stderr whatever the choice."""
    if quiet:
        return null()
    return sys.stderr if as_json else sys.stdout


def _document(name: str, chosen, result: StageResult | None, code: int, began: float) -> dict:
    report = Report(name, str(getattr(chosen, "version", "") or ""),
                    registry=getattr(chosen, "registry", None), started=began)
    if result is not None:
        result.add_to(report)
    return report.document(code)


def _print_json(stream: TextIO, name: str, chosen, result: StageResult | None, code: int,
                began: float, error: str | None = None) -> None:
    document = _document(name, chosen, result, code, began)
    if error is not None:
        document["error"] = error
    print(json.dumps(document, indent=2), file=stream)


_OUTCOMES = {EXIT_OK: "ok", EXIT_PARTIAL: "partial", EXIT_INTERRUPTED: "interrupted"}
# The commands whose output is a run's progress, not a product (a library file, a page, a
# tag per line as publish prints them): they end with the verdict even without --quiet, and
# it says how long they took.
ENDS_WITH_VERDICT = ("build", "release")


def verdict(name: str, document: dict) -> str:
    """One line saying how the run went: `release: ok in 42 s; build ok (built 2, …); …`,
    or where it stopped and why, with the first job's failure:
    `build: failed (exit 1) in 9 s: 2 job(s) failed; first: 1.0/busybox/amd64: …`."""
    code = document["exit_code"]
    stages = document["stages"]
    head = f"{name}: {_OUTCOMES.get(code, 'failed')}" + (f" (exit {code})" if code else "")
    if name in ENDS_WITH_VERDICT and document.get("started") and document.get("finished"):
        head += f" in {document['finished'] - document['started']:.0f} s"
    first = next((job["reason"] for job in document.get("jobs", ())
                  if job.get("status") == "failed"), None)
    head += _details(stages[name], first) if name in stages else ""
    others = [f"{stage} {entry['status']}{_details(entry, first)}"
              for stage, entry in stages.items() if stage != name]
    return "; ".join([head, *others])


def _details(entry: dict, first_failure: str | None) -> str:
    """A stage entry's reason when it failed (a build's, with its first failed job's), else
    its counts: `: why`, ` (built 2, …)`."""
    if entry["status"] == "failed" and entry.get("reason"):
        first = f"; first: {first_failure}" if first_failure and "failed" in entry else ""
        return f": {entry['reason']}{first}"
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
    retry.stop()  # the other threads' registry requests and waits end too
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit_at_once(signum, frame) -> None:
    os.write(2, f"{signal.Signals(signum).name} again: exiting at once\n".encode())
    os._exit(EXIT_INTERRUPTED)


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


@command(table.PLAN)
def plan():
    """Print a version's jobs: as text, as JSON, or as a CI matrix to fan the build out with."""
    from builder.commands import plan as chosen
    return chosen.PlanOptions, chosen.run


@command(table.BUILD)
def build():
    """Build (and push) the per-arch images of a version on the configured engines, in parallel."""
    from builder.commands import build as chosen
    return chosen.BuildOptions, chosen.run


@command(table.PUBLISH)
def publish():
    """Write a manifest list (or OCI index) for every tag and shared tag of a version.

    It lists the per-arch images --from-report's build pushed, else those whose build hash is
    the plan's."""
    from builder.commands import publish as chosen
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


@command(table.VERIFY)
def verify():
    """Check tags' cosign signatures (offline) and attestations with the public key.

    Exit 1 naming each index, image or attestation that is unsigned or wrong."""
    from builder.commands import verify as chosen
    return chosen.VerifyOptions, chosen.run


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


@command(table.REPORT_COMMAND)
def report():
    """Render a saved report as HTML again: the tag matrix, the engines' timeline, the pages."""
    from builder.commands import report as chosen
    return chosen.ReportOptions, chosen.run


ns = Collection(generate, library, plan, build, publish, release, summary, verify, registry,
                mirror, update, report)


def main() -> None:
    try:
        CommandLine(namespace=ns, name=BINARY, binary=BINARY, version=_version()).run()
    except BrokenPipeError:
        # The reader went away (`python-image-builder --list | head`): stop as a shell tool
        # does, without a traceback, and without another at exit flushing stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
