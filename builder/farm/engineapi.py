"""Calls to a Docker engine (pull, build, tag, push) and their streams, as typed events and errors.

The engine reports failures inside its streams, never as exceptions (docs/classic-builder.md,
"Streams"): any ``error`` key fails the call. Build output becomes `Step`, `Container` and
`Output` events; failures become `EngineError`s that name the step, the exit code and the
engine. A pushed digest comes from the stream's ``aux.Digest`` and is then confirmed with the
registry itself, so a reported digest is one the registry really serves.

A pull or a push that the registry failed for a transient reason (5xx, 429, EOF, a reset, a
timeout, in the engine's words: `registry_failure` reads them) runs again whole under the one
retry policy (`builder.model.retry`); a push is idempotent, and blobs already there are skipped. A
build step's failure is never retried.
"""
from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Union

import requests
from docker.errors import APIError, DockerException

from builder.farm import containers, engines
from builder.model import retry
from builder.registry.credentials import Credentials
from builder.model.builders import Engine
from builder.farm.engines import short_error
from builder.farm.pools import Backend
from builder.model.errors import BuilderError
from builder.plan.plan import BuildJob
from builder.model.platforms import Platform, image_platform, oci_text
from builder.model.reference import ImageRef
from builder.registry.client import NotFound, RegistryClient
from builder.model.smoke import Check, Outcome, verdict

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$", re.MULTILINE)
# The classic builder runs each RUN in a container; killing it is how a build is stopped.
_RUNNING_RE = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})$", re.MULTILINE)
# Printed on every step of a FROM-scratch build for a foreign platform, and harmless
# (docs/classic-builder.md, trap 5).
_NOISE = "[Warning] The requested image's platform"
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# The engine's error repeats the whole RUN command; the step already names it.
_COMMAND_RE = re.compile(r"^The command '.*' returned", re.DOTALL)
_STEP_SHOWN = 72  # characters of a step's instruction in a message; the log has all of it


class EngineError(BuilderError):
    """An engine refused or failed a pull, a build or a push."""


class StepFailed(EngineError):
    """A Dockerfile step failed; `step` names it, `exit_code` is its command's, if it had one."""

    def __init__(self, message: str, *, step: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code


class RegistryFailed(EngineError):
    """The registry failed the engine's pull or push; `transient` says what kind of failure
    when another attempt may go through, else it is None."""

    def __init__(self, message: str, *, transient: retry.Transient | None) -> None:
        super().__init__(message)
        self.transient = transient


# How the engine words a registry's transient failures (its Go errors, passed on as text):
# "received unexpected HTTP status: 502 Bad Gateway", "toomanyrequests: …", "Put …: EOF",
# "read: connection reset by peer", "net/http: TLS handshake timeout", "i/o timeout".
_REGISTRY_FAILURES = (
    (re.compile(r"toomanyrequests|too many requests|HTTP (?:status: )?429\b", re.IGNORECASE),
     retry.Kind.RATE_LIMITED),
    (re.compile(r"HTTP (?:status: )?50[0234]\b|\b50[0234] (?:Internal Server Error|Bad Gateway|"
                r"Service Unavailable|Gateway Time-?out)", re.IGNORECASE), retry.Kind.SERVER_ERROR),
    (re.compile(r"timeout|timed out|deadline exceeded", re.IGNORECASE), retry.Kind.TIMEOUT),
    (re.compile(r"\bEOF\b|connection reset|broken pipe|connection refused", re.IGNORECASE),
     retry.Kind.DROPPED),
)


# An engine's words for a registry that takes no write until someone acts.
_REFUSED = re.compile(r"\b507\b|insufficient storage|\b413\b|request entity too large|"
                      r"payload too large|no space left", re.IGNORECASE)


def registry_failure(text: str) -> retry.Transient | None:
    """The kind of a transient registry failure in an engine's error text, or None: the one
    place engine error text is read for that."""
    for pattern, kind in _REGISTRY_FAILURES:
        match = pattern.search(text)
        if match:
            return retry.Transient(kind, text.strip().splitlines()[0][:200])
    return None


def _retryable(outcome: object) -> retry.Transient | None:
    return outcome.transient if isinstance(outcome, RegistryFailed) else None


class WrongPlatform(EngineError):
    """The engine returned an image of another platform than the one asked for."""


@dataclass(frozen=True)
class Step:
    number: int
    total: int
    instruction: str


@dataclass(frozen=True)
class Container:
    """The container a RUN step runs in: what to kill to stop the build."""
    id: str


@dataclass(frozen=True)
class Output:
    text: str  # for the job's log


Event = Union[Step, Container, Output]


@dataclass(frozen=True)
class PushedImage:
    job: BuildJob
    reference: ImageRef
    digest: str
    size: int
    platform: Platform


def auth_config(credentials: Credentials | None) -> dict:
    """The one registry's credentials for one engine call (a pull or a push), passed per call:
    the engine gets what that call needs and nothing of the Docker config (engines.connect's
    client holds none), and a later `docker login` is not missed (docs/classic-builder.md,
    "Credentials"). An empty config is anonymous."""
    if credentials is None:
        return {}
    return {"username": credentials.username, "password": credentials.password}


def pull(api, engine: Engine, base: str, platform: Platform, log: Callable[[str], None], *,
         registry: RegistryClient) -> None:
    """Pull a pinned base with the credentials of `registry` (the base's own); the classic
    builder would pull it itself, but only with those of the engine's client config. `log` sees
    each progress line and may raise to stop the pull. `registry` is also asked (`_pull_failed`)."""
    repository, _, digest = base.partition("@")

    def attempt() -> None:
        try:
            for chunk in api.pull(repository, tag=digest, stream=True, decode=True,
                                  platform=platform.oci if platform.os == "linux" else None,
                                  auth_config=auth_config(registry.credentials())):
                if "error" in chunk:
                    raise _pull_failed(engine, base, chunk["error"], registry)
                if chunk.get("status"):
                    log(f"{chunk.get('id', '')} {chunk['status']}".strip())
        except APIError as error:
            raise _pull_failed(engine, base, str(error.explanation or error), registry) from None

    retry.call(attempt, _retryable, host=ImageRef.parse(base).registry,
               what=f"the pull of {base}", policy=retry.POLICY.compound())


# An engine's words for no such image. The containerd store says them too when the manifest's HEAD
# got no answer (a dropped connection, a timeout): it then asks for the blob of that digest, which
# a registry answers 404, and reports that 404 over the lost request (a 5xx it reports as such).
_NOT_FOUND = re.compile(r"\bnot found\b|manifest unknown", re.IGNORECASE)


def _pull_failed(engine: Engine, base: str, error: str, registry: RegistryClient) -> RegistryFailed:
    """The engine's failure to pull `base`; its "no such image" is retried if `registry` has it."""
    what = f"engine {engine.name} cannot pull the base image {base}"
    failed = _registry_failed(what, error)
    if failed.transient is not None or not _NOT_FOUND.search(error):
        return failed
    ref = ImageRef.parse(base)
    if registry.head_manifest(ref.repository, ref.digest or ref.tag) is None:
        return RegistryFailed(f"{what}: {registry.registry} has no such image ({error.strip()}); "
                              "push it there, or pin the base to a digest it serves",
                              transient=None)
    served = retry.Transient(retry.Kind.DROPPED,
                             f"the engine found no such image, but {registry.registry} serves it")
    return RegistryFailed(f"{failed}; yet {registry.registry} serves it here: the engine's "
                          "request got no answer, or it reaches another registry by that name",
                          transient=served)


def _registry_failed(what: str, error: str) -> RegistryFailed:
    return RegistryFailed(f"{what}: {error.strip()}", transient=registry_failure(error))


def traced_command(line: str) -> str | None:
    """The command a `set -x` trace line names, or None. Two commands of one pipeline trace
    at once, so a line can start with both markers (`+ + echo …`)."""
    if not line.startswith("+ "):
        return None
    return re.sub(r"^(\+ )+", "", line).strip() or None


def build(api, engine: Engine, context: bytes | BinaryIO, platform: Platform, *,
          build_args: dict[str, str], labels: dict[str, str], nocache: bool,
          on_event: Callable[[Event], None], host_network: bool = False) -> str:
    """Build the context (a tar, its Dockerfile inside: bytes, or a file streamed from where
    it is, for one too big to hold); returns the image id. Each event of the stream goes to
    `on_event` as it comes. `host_network`: RUN steps share the engine host's network, to
    reach a mirror on its loopback."""
    step = "before the first step"
    image_id = None
    # The last command `set -x` traced (a pipeline's commands trace in either order): which
    # part of a long RUN step failed. Stream chunks split lines anywhere, so lines are rejoined.
    command, partial = None, ""
    try:
        stream = api.build(
            fileobj=io.BytesIO(context) if isinstance(context, bytes) else context,
            custom_context=True, decode=True, rm=True, forcerm=True, nocache=nocache,
            network_mode="host" if host_network else None,
            # A Windows engine builds its own os only and takes no platform parameter.
            platform=platform.oci if platform.os == "linux" else None,
            buildargs=build_args, labels=labels)
        for chunk in stream:
            text = chunk.get("stream", "")
            if text:
                for match in _RUNNING_RE.finditer(text):
                    on_event(Container(match.group(1)))
                for match in _STEP_RE.finditer(text):
                    instruction = match.group(3).strip()
                    shown = (instruction if len(instruction) <= _STEP_SHOWN
                             else instruction[:_STEP_SHOWN].rstrip() + " …")
                    step = f"step {match.group(1)}/{match.group(2)} ({shown})"
                    command, partial = None, ""
                    on_event(Step(int(match.group(1)), int(match.group(2)), instruction))
                *lines, partial = (partial + _ANSI_RE.sub("", text)).split("\n")
                for line in lines:
                    command = traced_command(line) or command
                if _NOISE not in text:
                    on_event(Output(text))
            elif chunk.get("status"):
                on_event(Output(" ".join(str(chunk.get(k, "")) for k in ("id", "status")).strip()
                                + "\n"))
            if "error" in chunk:
                code = (chunk.get("errorDetail") or {}).get("code")
                exit_code = f" with exit code {code}" if code is not None else ""
                at = f" at `{command[:160]}`" if command else ""
                error = _COMMAND_RE.sub("the command returned", chunk["error"].strip())
                raise StepFailed(f"{step} failed{exit_code}{at} on engine "
                                 f"{engine.name}: {error}", step=step, exit_code=code)
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
    except APIError as error:
        raise EngineError(f"the engine {engine.name} refused the build "
                          f"({step}): {error.explanation or error}") from None
    except (DockerException, requests.RequestException) as error:
        raise EngineError(f"engine {engine.name} ({engine.url}) failed during "
                          f"the build ({step}): {short_error(error)}") from None
    if not image_id:
        raise EngineError(f"the build on {engine.name} ended without an image id")
    return image_id


def check_platform(api, engine: Engine, image_id: str, platform: Platform,
                   cause: Callable[[str | None], str] | None = None) -> None:
    """WrongPlatform unless the image is of `platform`: the classic builder's cache can return
    another platform's image (docs/classic-builder.md, trap 1), and on the containerd image
    store it drops a variant. `cause` says why, given the variant the image has (None: the
    classic builder on the graphdriver store)."""
    fields = image_platform(api.inspect_image(image_id))
    if not platform.matches(*fields):
        cause = cause or (lambda variant: Backend().wrong_platform(engine.name, platform, variant))
        raise WrongPlatform(f"engine {engine.name} returned a "
                            f"{oci_text(*fields[:3])} image ({image_id[:19]}) for a "
                            f"{platform.oci} build; {cause(fields[2] or None)}")


def run_checks(api, image_id: str, checks: tuple[Check, ...], version: str, platform: Platform,
               log: Callable[[str], None], timeout: int = 900) -> list[Outcome]:
    """Run each smoke check in a fresh container of `image_id`, network disabled; every check
    runs, so the log and the report show all that fail, not just the first."""
    outcomes = []
    for check in checks:
        started = time.monotonic()
        try:
            exit_code, output = containers.run_once(api, image_id, check.run, platform, timeout)
        except (DockerException, requests.RequestException) as error:
            exit_code, output = None, f"{type(error).__name__}: {short_error(error)}"
        outcome = verdict(check, version, exit_code, output, time.monotonic() - started)
        log(f"smoke test {check.name}: {'passed' if outcome.passed else 'FAILED: ' + outcome.problem}"
            f" ({outcome.seconds:.1f}s)")
        for line in outcome.output.splitlines():
            log(f"  | {line}")
        outcomes.append(outcome)
    return outcomes


def tag(api, image_id: str, ref: ImageRef) -> None:
    api.tag(image_id, ref.familiar_repository, ref.tag, force=True)


def push_image(api, job: BuildJob, registry: RegistryClient,
               log: Callable[[str], None] = lambda line: None) -> PushedImage:
    """Push the job's tagged image with `api` (a docker APIClient): see `push`."""
    digest, size = push(api, job.image, registry, log)
    return PushedImage(job, job.image, digest, size, job.platform)


# On the containerd image store the push stream carries no `aux` (moby#48331), only the
# status line the CLI prints: "TAG: digest: sha256:… size: N".
_PUSHED_STATUS = re.compile(r"^(?P<tag>[\w][\w.-]*): digest: (?P<digest>sha256:[0-9a-f]{64}) "
                            r"size: (?P<size>\d+)$")


def pushed_digest(chunk: dict, tag: str) -> tuple[str, int | None] | None:
    """The digest and size a push stream's `chunk` reports for `tag`: its `aux` (the
    graphdriver store) or its final status line (the containerd store); None if neither."""
    aux = chunk.get("aux") or {}
    if aux.get("Digest"):
        return aux["Digest"], aux.get("Size")
    status = _PUSHED_STATUS.match(chunk.get("status") or "")
    if status and status["tag"] == tag:
        return status["digest"], int(status["size"])
    return None


def push(api, ref: ImageRef, registry: RegistryClient,
         log: Callable[[str], None] = lambda line: None) -> tuple[str, int]:
    """Push `ref` with `api`, again on a transient failure; its digest and size, once `registry`
    serves that digest at the tag. EngineError on any other failure, at once if the registry
    refuses writes; one refusing this push (507, 413, 5xx past retries) is marked so."""
    if registry.refusing:
        raise EngineError(f"{ref} not pushed: registry {registry.registry} refuses writes "
                          f"({registry.refusing})")

    def attempt() -> tuple[str | None, int | None]:
        digest = size = None
        try:
            for chunk in api.push(ref.familiar_repository, tag=ref.tag, stream=True,
                                  decode=True, auth_config=auth_config(registry.credentials())):
                if "error" in chunk:
                    raise _registry_failed(f"pushing {ref} failed", chunk["error"])
                digest, size = pushed_digest(chunk, ref.tag) or (digest, size)
                log(_push_line(chunk))
        except APIError as error:
            raise _registry_failed(f"pushing {ref} failed",
                                   str(error.explanation or error)) from None
        return digest, size

    try:
        digest, size = retry.call(attempt, _retryable, host=ref.registry,
                                  what=f"the push of {ref}", policy=retry.POLICY.compound())
    except RegistryFailed as error:
        if _REFUSED.search(str(error)) or (error.transient is not None and  # full, too large,
                error.transient.kind is retry.Kind.SERVER_ERROR):  # or failing every retry
            registry.refuse(f"the push of {ref}: {str(error).splitlines()[0][:200]}")
        raise
    if not digest:
        raise EngineError(f"pushing {ref} ended without a digest from the engine")
    found = registry.head_manifest(ref.repository, ref.tag)
    if found is None or found.digest != digest:
        seen = found.digest if found else "nothing"
        raise EngineError(f"the engine pushed {ref} as {digest}, but the registry "
                          f"serves {seen} there; another push raced this one, run again")
    return digest, size or found.size


def registered(registry: RegistryClient, ref: ImageRef, label: str) -> tuple[str, str] | None:
    """(digest, value of `label`) of the image the registry holds at `ref`, or None if none."""
    try:
        manifest = registry.get_manifest(ref.repository, ref.tag)
    except NotFound:
        return None
    if manifest.is_list:
        return None
    config = registry.get_config(ref.repository, manifest)
    labels = (config.get("config") or {}).get("Labels") or {}
    return manifest.digest, labels.get(label, "")


def kill(engine: Engine, container: str) -> None:
    """Stop a running RUN step; quietly nothing when it has ended or the engine is gone."""
    try:
        client = engines.connect(engine, timeout=30)
        try:
            client.kill(container)
        finally:
            client.close()
    except (BuilderError, DockerException, requests.RequestException):
        pass  # the step ended on its own meanwhile, or the engine is gone: nothing to stop


def _push_line(chunk: dict) -> str:
    parts = [chunk.get("id", ""), chunk.get("status", ""), chunk.get("progress", "")]
    if chunk.get("aux"):
        parts.append(str(chunk["aux"]))
    return " ".join(p for p in parts if p)
