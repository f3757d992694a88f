"""A job's go on one engine: pull its bases, build, check the platform, tag, smoke-test, push.

`EngineWork.run` returns what the go came to (`builder.farm.results.EngineRun`), also when it
fails: the runner decides whether the engine went away (then the job is built again elsewhere)
or the job failed. Shared by the run's job threads: each engine's push slots, and the RUN
steps under way, which a Ctrl-C kills.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Iterable

from builder.farm import engineapi
from builder.farm import engines
from builder.model.builders import Engine
from builder.farm.engineapi import Container, Output, PushedImage, Step
from builder.farm.progress import Progress
from builder.farm.results import EngineRun
from builder.model.errors import BuilderError
from builder.model.reference import ImageRef
from builder.model.smoke import Outcome
from builder.plan.dockerfile import needs_host_network
from builder.plan.identity import HASH_LABEL, Prepared
from builder.plan.plan import BuildJob
from builder.registry.client import Registries

BUILD_TIMEOUT = 3600  # seconds without a byte from the engine: a RUN under QEMU can be quiet long


def go_on(cancelled: threading.Event, before: str) -> None:
    """Stop the job (a BuilderError) once the run is cancelled."""
    if cancelled.is_set():
        raise BuilderError(f"interrupted before {before}")


class EngineWork:
    def __init__(self, pool_engines: Iterable[Engine], *, push: bool, nocache: bool,
                 registries: Registries, cancelled: threading.Event) -> None:
        self.push = push
        self.nocache = nocache
        self.registries = registries
        self.cancelled = cancelled
        self.progress: Progress | None = None  # the run's, set when it starts
        self._pushes = {e.name: threading.Semaphore(e.pushes) for e in pool_engines}
        self._lock = threading.Lock()
        self._containers: dict[str, tuple[Engine, str]] = {}  # job key → its running RUN step

    def kill_all(self) -> None:
        """Kill every RUN step under way (Ctrl-C)."""
        with self._lock:
            running = list(self._containers.values())
        for engine, container in running:
            engineapi.kill(engine, container)

    def run(self, engine: Engine, job: BuildJob, prepared: Prepared, pulls: tuple[str, ...],
            log) -> EngineRun:
        """Build, test and push `job` on `engine`, from the start, as far as it gets; `pulls`
        are the images the engine pulls first."""
        run = EngineRun(engine.name, time.time())
        api = None
        try:
            log.write(f"--- build on engine {engine.name} ({engine.url}) ---\n")
            self.progress.update(job.key, "building", engine=engine.name)
            api = engines.connect(engine, timeout=BUILD_TIMEOUT)
            run = replace(run, image_id=self._build(api, engine, job, prepared, pulls, log))
            run = replace(run, checks=self._smoke_test(api, job, run.image_id, log))
            _check_smoke(run.checks)
            run = replace(run, built=time.time())
            if self.push:
                run = replace(run, pushed=self._push(api, engine, job, log))
        except Exception as error:  # noqa: BLE001 - a dropped stream surfaces as urllib3's own
            return replace(run, error=error)
        finally:
            with self._lock:
                self._containers.pop(job.key, None)
            if api is not None:
                api.close()
        return replace(run, finished=time.time())

    def _push(self, api, engine: Engine, job: BuildJob, log) -> PushedImage:
        self.progress.update(job.key, "pushing", f"waiting for a push slot on {engine.name}")
        with self._pushes[engine.name]:
            go_on(self.cancelled, "its push; nothing of it was pushed")
            self.progress.update(job.key, "pushing", str(job.image))
            return engineapi.push_image(api, job, self.registries.client(job.image.registry),
                                        lambda line: log.write(line + "\n"))

    def _smoke_test(self, api, job: BuildJob, image_id: str, log) -> tuple[Outcome, ...]:
        """The job's smoke tests, each run in the image just built."""
        if not job.checks:
            return ()
        go_on(self.cancelled, "its smoke tests; nothing of it was pushed")
        self.progress.update(job.key, "testing", f"{len(job.checks)} smoke tests")
        return tuple(engineapi.run_checks(api, image_id, job.checks, job.version.full,
                                          job.platform, lambda line: log.write(line + "\n")))

    def _build(self, api, engine: Engine, job: BuildJob, prepared: Prepared,
               pulls: tuple[str, ...], log) -> str:
        """Pull the bases, build, check the platform, tag; returns the image id."""
        def pulling(line: str) -> None:
            go_on(self.cancelled, "its pull ended; nothing was built")
            log.write(line + "\n")

        for base in pulls:
            engineapi.pull(api, engine, base, job.platform, pulling,
                           credentials=self.registries.client(
                               ImageRef.parse(base).registry).credentials())

        def on_event(event: engineapi.Event) -> None:
            if isinstance(event, Container):
                with self._lock:
                    self._containers[job.key] = (engine, event.id)
                if self.cancelled.is_set():  # Ctrl-C came before this step's container was known
                    engineapi.kill(engine, event.id)
            elif isinstance(event, Step):
                # Steps other than RUN have no container to kill: the job stops at the next one.
                go_on(self.cancelled, f"step {event.number}/{event.total}; nothing was pushed")
                self.progress.update(job.key, "building", f"step {event.number}/{event.total}")
            elif isinstance(event, Output):
                log.write(event.text)

        image_id = engineapi.build(api, engine, prepared.context, job.platform,
                                   build_args=job.build_args,
                                   labels={HASH_LABEL: prepared.build_hash},
                                   nocache=self.nocache, on_event=on_event,
                                   host_network=needs_host_network(prepared.mirrors))
        engineapi.check_platform(api, engine, image_id, job.platform)
        engineapi.tag(api, image_id, job.image)
        log.write(f"tagged {image_id} as {job.image}\n")
        return image_id


def _check_smoke(checks: tuple[Outcome, ...]) -> None:
    """Fail the job, before anything of it is pushed, unless every smoke test passed."""
    failed = [c for c in checks if not c.passed]
    if failed:
        first = failed[0]
        output = " | ".join(first.output.strip().splitlines()[-3:])
        raise BuilderError(f"smoke test {first.name} failed ({first.problem})"
                           f"{': ' + output if output else ''}"
                           f"{f'; {len(failed) - 1} more failed' if len(failed) > 1 else ''}"
                           "; nothing was pushed")
