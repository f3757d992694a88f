"""Health of the build engines: probed before a run, and asked again when a job on one fails.

The edge of `builder.farm.pools`. Before a run each engine of a pool is asked what it runs
(`version`, `info`: os, architecture, os.version on Windows, and its image store: containerd or
graphdriver), which builder builds each platform there (`pools.backend`: one that would build it
wrongly, or BuildKit without a buildx here, refuses it), and for each platform it would
build by emulation a one-second container of that platform proves its binfmt handler works, so a
missing QEMU shows here as one line, not as an exec format error in a job's first RUN. When a job
fails, `unreachable` tells an engine that went away (connection refused or reset, the daemon
killed mid-build or mid-push) from a build that went wrong, which is not retried elsewhere.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import requests
import urllib3.exceptions
from docker.errors import APIError, DockerException, NotFound

from builder.farm import buildx
from builder.farm import engineapi
from builder.farm import engines
from builder.model.builders import Engine
from builder.farm.engines import short_error
from builder.model.errors import BuilderError
from builder.model.platforms import Platform
from builder.plan.plan import Plan
from builder.farm.pools import Backend, Facts, Health, backend, by_emulation, judge
from builder.registry.client import RegistryClient

PROBE_TIMEOUT = 30  # seconds for version/info and a ping: an engine slower than that is not healthy
RUN_TIMEOUT = 300  # seconds to pull the probe image and run it, on a loaded machine under QEMU
# What a dropped connection to an engine surfaces as, anywhere in an error's chain.
_CONNECTION_LOST = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.ProtocolError, ConnectionError)


@dataclass(frozen=True)
class ProbeImage:
    """The image an emulation probe runs: pinned, pulled as a build pulls it (`engineapi.pull`)."""
    reference: str
    registry: RegistryClient  # the image's own


class EngineUnreachable(engineapi.EngineError):
    """A job's engine went away under it; `answers` says whether it is back (a reset connection)."""

    def __init__(self, message: str, *, answers: bool) -> None:
        super().__init__(message)
        self.answers = answers


def facts(engine: Engine) -> Facts:
    """What `engine` runs, as it says; BuilderError when it does not answer."""
    api = engines.connect(engine, timeout=PROBE_TIMEOUT)
    try:
        version, info = engines.engine_version(api), api.info()
    except (DockerException, requests.RequestException) as error:
        raise BuilderError(f"engine {engine.name} ({engine.url}) does not answer version/info: "
                           f"{short_error(error)}") from None
    finally:
        api.close()
    return Facts.from_answers(version, info)


def runs(engine: Engine, platform: Platform, image: ProbeImage) -> str | None:
    """Run `true` in a `platform` container of `image` on `engine`: None when it exits 0, else why
    not. The image is pulled as a build would pull it."""
    api = engines.connect(engine, timeout=RUN_TIMEOUT)
    container = None
    try:
        try:
            api.inspect_image(image.reference)  # pinned by digest: one there is the same image
        except NotFound:
            # Pulled only when missing: a pull asks the registry again on every run, and a
            # no-op release would pay a ping and a manifest GET per emulated platform.
            engineapi.pull(api, engine, image.reference, platform, lambda line: None,
                           registry=image.registry)
        container = api.create_container(image.reference, command=["true"], entrypoint=[],
                                         network_disabled=True, platform=platform.oci)["Id"]
        api.start(container)
        code = api.wait(container, timeout=RUN_TIMEOUT)["StatusCode"]
        if code == 0:
            return None
        output = api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace").strip()
        said = f": {output.splitlines()[-1]}" if output else ""
        return (f"a {platform.oci} container exits {code}{said}; its host needs a working "
                f"binfmt_misc handler for {platform.architecture} (QEMU user mode, flag F)")
    except APIError as error:
        return f"a {platform.oci} container does not start: {error.explanation or error}"
    finally:
        if container is not None:
            try:
                api.remove_container(container, force=True)
            except (DockerException, requests.RequestException):
                pass  # a stopped container left behind costs disk, not correctness
        api.close()


def wanted(plan: Plan) -> dict[str, tuple[Platform, ...]]:
    """Engine name → the platforms of the plan's jobs whose pools hold it: what it is probed for."""
    needed: dict[str, dict[str, Platform]] = {}
    for job in plan.jobs:
        for name in job.pool:
            needed.setdefault(name, {})[job.platform.name] = job.platform
    return {name: tuple(found.values()) for name, found in needed.items()}


def check(pool_engines: Sequence[Engine], needed: Mapping[str, Sequence[Platform]],
          probe_image: Callable[[Platform], ProbeImage | None]) -> Health:
    """Probe each engine for the platforms `needed` of it (engine name → platforms with jobs),
    all at once. `probe_image` names an image of a platform to run, or None (then the emulation
    goes unproved, and a broken handler fails that job's build)."""
    left_out: dict[str, str] = {}
    refused: dict[tuple[str, str], str] = {}
    qemu: set[tuple[str, str]] = set()
    probed: dict[str, Facts] = {}
    backends: dict[tuple[str, str], Backend] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = {e.name: pool.submit(facts, e) for e in pool_engines}
        emulated = []
        for engine in pool_engines:
            try:
                engine_facts = found[engine.name].result()
            except BuilderError as error:
                left_out[engine.name] = _naming(engine, str(error))
                continue
            probed[engine.name] = engine_facts
            wanted = {p.name for p in needed.get(engine.name, ())}
            lies, foreign = judge(engine, engine_facts)
            refused.update({(engine.name, name): why for name, why in lies.items() if name in wanted})
            for platform in needed.get(engine.name, ()):
                chosen, wrong = backend(engine, engine_facts, platform, buildx.problem)
                backends[(engine.name, platform.name)] = chosen
                if wrong and (engine.name, platform.name) not in refused:
                    refused[(engine.name, platform.name)] = wrong
            for platform in foreign:
                if platform.name in wanted and (engine.name, platform.name) not in refused:
                    emulated.append((engine, platform, pool.submit(_emulates, engine, platform,
                                                                   engine_facts, probe_image)))
        for engine, platform, future in emulated:
            try:
                problem = future.result()
            except BuilderError as error:
                left_out[engine.name] = _naming(engine, f"stopped answering during its probe: "
                                                        f"{error}")
                continue
            if problem:
                refused[(engine.name, platform.name)] = problem
            elif by_emulation(found[engine.name].result(), platform):
                qemu.add((engine.name, platform.name))
    return Health(left_out, refused, frozenset(qemu), probed, backends)


def _naming(engine: Engine, problem: str) -> str:
    """`problem` as a sentence about `engine`: connect's own messages name it already."""
    return problem if problem.startswith(f"engine {engine.name} ") else \
        f"engine {engine.name} ({engine.url}) {problem}"


def _emulates(engine: Engine, platform: Platform, engine_facts: Facts,
              probe_image: Callable[[Platform], ProbeImage | None]) -> str | None:
    image = probe_image(platform)
    if image is None:
        return None
    try:
        problem = runs(engine, platform, image)
    except engineapi.EngineError as error:
        if _connection_lost(error) is not None:
            raise
        return None  # the probe image cannot be pulled there: the job's own pull will say why
    except (DockerException, requests.RequestException) as error:
        raise BuilderError(short_error(error)) from None
    return f"it runs {engine_facts}, and {problem}" if problem else None


def answers(engine: Engine) -> bool:
    """Whether `engine` answers a ping now."""
    try:
        api = engines.connect(engine, timeout=PROBE_TIMEOUT)
    except BuilderError:
        return False
    try:
        return bool(api.ping())
    except (DockerException, requests.RequestException):
        return False
    finally:
        api.close()


def unreachable(engine: Engine, error: BaseException) -> EngineUnreachable | None:
    """`error`, of a job on `engine`, as the engine having gone away; None when the engine is
    there and the error is the job's own. A failed step or a wrong platform is always the job's:
    the engine said so."""
    if isinstance(error, (engineapi.StepFailed, engineapi.WrongPlatform)):
        return None
    lost = _connection_lost(error)
    there = answers(engine)
    if lost is None and there:
        return None
    how = f"{type(lost).__name__}: {short_error(lost)}" if lost is not None else \
        f"{error}; it no longer answers"
    return EngineUnreachable(f"engine {engine.name} ({engine.url}) became unreachable: {how}",
                             answers=there)


def _connection_lost(error: BaseException) -> BaseException | None:
    """The dropped connection in `error`'s chain (causes and contexts), if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _CONNECTION_LOST):
            return error
        error = error.__cause__ or error.__context__
    return None
