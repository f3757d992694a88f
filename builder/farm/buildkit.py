"""BuildKit builds of Linux jobs: `docker buildx build` on the job's engine, its progress read
into the classic path's typed events (`engineapi.Step`, `Output`) and errors (`StepFailed`,
`EngineError`).

Only the build differs from the classic path: buildx runs against the engine's own BuildKit (its
docker driver, with ``--load``), so the image lands in the engine's store, tagged as the job's
image, and the job goes on through the same calls: its platform checked, smoke-tested, pushed
and verified with the engine's API (`builder.farm.onengine`). The process is
`builder.farm.buildx`'s; this module reads its ``--progress=rawjson`` output, one BuildKit
SolveStatus per line: ``vertexes`` (a step is a vertex named ``[2/5] RUN …``; its ``error`` says
why it failed), ``logs`` (a step's output, base64) and ``warnings``. Lines that are not JSON are
buildx's own words (its final ``ERROR: …``) and go to the log as they are.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from builder.farm import buildx
from builder.farm.engineapi import EngineError, Event, Output, Step, StepFailed, traced_command
from builder.model.builders import Engine
from builder.model.platforms import Platform
from builder.model.reference import ImageRef
from builder.registry.credentials import Credentials

# "[2/5] RUN …", or "[stage-1 2/5] RUN …" in a multi-stage build.
_STEP_RE = re.compile(r"^\[(?:[^\]]* )?(\d+)/(\d+)\] (.*)$", re.DOTALL)
_EXIT_RE = re.compile(r"exit code: (\d+)")
# The step names the command already: `process "/bin/sh -c …" did not complete successfully`.
_PROCESS_RE = re.compile(r'^process ".*" did not complete successfully', re.DOTALL)
_STEP_SHOWN = 72  # characters of a step's instruction in a message; the log has all of it


@dataclass(frozen=True)
class Stoppable:
    """The build is under way: calling `stop` ends it (Ctrl-C), as killing a RUN step's
    container ends a classic build."""
    stop: Callable[[], None]


def _shown(instruction: str) -> str:
    one_line = " ".join(instruction.split())
    return one_line if len(one_line) <= _STEP_SHOWN else one_line[:_STEP_SHOWN].rstrip() + " …"


class Progress:
    """buildx's rawjson lines in, the classic path's events out (`on_event`), and what failed."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self._steps: dict[str, str] = {}  # vertex digest → "step 2/5 (RUN …)"
        self._started: set[str] = set()
        self._commands: dict[str, str] = {}  # vertex → the last command `set -x` traced there
        self._partial: dict[str, str] = {}  # vertex → its output's unfinished line
        self.failed: tuple[str, str, str | None] | None = None  # (vertex name, error, command)
        self.said: list[str] = []  # buildx's own lines

    def feed(self, line: str) -> None:
        try:
            status = json.loads(line)
        except ValueError:
            status = None
        if not isinstance(status, dict):
            if line.strip():
                self.said.append(line)
            self.on_event(Output(line + "\n"))
            return
        for vertex in status.get("vertexes") or ():
            self._vertex(vertex)
        for entry in status.get("logs") or ():
            self._log(entry)
        for warning in status.get("warnings") or ():
            text = base64.b64decode(warning.get("short") or b"").decode("utf-8", "replace")
            self.on_event(Output(f"warning: {text.strip()}\n"))

    def _vertex(self, vertex: dict) -> None:
        digest, name = vertex.get("digest", ""), vertex.get("name", "")
        step = _STEP_RE.match(name)
        if step and digest not in self._steps:
            self._steps[digest] = f"step {step.group(1)}/{step.group(2)} ({_shown(step.group(3))})"
        if vertex.get("started") and digest not in self._started:
            self._started.add(digest)
            self.on_event(Output(f"# {name}\n"))
            if step:
                self.on_event(Step(int(step.group(1)), int(step.group(2)), step.group(3).strip()))
        if vertex.get("cached") and vertex.get("completed"):
            self.on_event(Output(f"# {name}: CACHED\n"))
        if vertex.get("error") and self.failed is None:
            self.failed = (self._steps.get(digest) or name, vertex["error"].strip(),
                           self._commands.get(digest))

    def _log(self, entry: dict) -> None:
        vertex = entry.get("vertex", "")
        text = base64.b64decode(entry.get("data") or b"").decode("utf-8", "replace")
        *lines, self._partial[vertex] = (self._partial.get(vertex, "") + text).split("\n")
        for line in lines:
            self._commands[vertex] = traced_command(line) or self._commands.get(vertex, "")
        self.on_event(Output(text))

    def error(self, engine: Engine, exit_code: int) -> EngineError:
        """What a buildx run that exited `exit_code` failed of: a step, else buildx's words."""
        said = next((line for line in reversed(self.said) if line.startswith("ERROR")),
                    self.said[-1] if self.said else f"buildx exited {exit_code}")
        if self.failed and self.failed[0].startswith("step "):
            step, error, command = self.failed
            code = _EXIT_RE.search(error)
            exit_text = f" with exit code {code.group(1)}" if code else ""
            at = f" at `{command[:160]}`" if command else ""
            error = _PROCESS_RE.sub("the command did not complete successfully", error)
            return StepFailed(f"{step} failed{exit_text}{at} on engine {engine.name} (BuildKit): "
                              f"{error}", step=step, exit_code=int(code.group(1)) if code else None)
        where = f" ({self.failed[0]})" if self.failed else ""
        return EngineError(f"the BuildKit build on engine {engine.name} ({engine.url}) "
                           f"failed{where}: {said.strip()[:400]}")


def arguments(image: ImageRef, platform: Platform, *, build_args: Mapping[str, str],
              labels: Mapping[str, str], nocache: bool, host_network: bool) -> list[str]:
    """`docker buildx build`'s arguments for one job; its Dockerfile comes on stdin (`-`):
    the context is the Dockerfile alone, as the classic path's context tar is."""
    argv = ["build", "--progress=rawjson", "--platform", platform.oci, "--load",
            "--provenance=false", "--sbom=false", "--tag", str(image)]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if host_network:
        argv += ["--network", "host"]
    if nocache:
        argv.append("--no-cache")
    return argv + ["-"]


def build(engine: Engine, dockerfile: str, image: ImageRef, platform: Platform, *,
          build_args: Mapping[str, str], labels: Mapping[str, str], nocache: bool,
          credentials: Mapping[str, Credentials | None], on_event: Callable[[object], None],
          host_network: bool = False, quiet: float = 3600) -> None:
    """Build `dockerfile` for `platform` on `engine` with BuildKit, tagged `image` in its store;
    `credentials`: the registries it reads (host → credentials). Each event goes to `on_event`
    as it comes, a `Stoppable` first. BuildxMissing, StepFailed or EngineError when it fails."""
    binary, _ = buildx.find()
    argv = [binary, *arguments(image, platform, build_args=build_args, labels=labels,
                               nocache=nocache, host_network=host_network)]
    progress = Progress(on_event)
    with buildx.environment(engine, credentials) as env:
        run = buildx.Run(argv, env, dockerfile.encode(), quiet)
        try:
            on_event(Stoppable(run.stop))
            for line in run.lines():
                progress.feed(line)
        except BaseException:  # stopped, or a bug here: buildx must not build on unread
            run.stop()
            run.wait()
            raise
        code = run.wait()
    if code:
        raise progress.error(engine, code)
