"""A job's go on one engine: pull its bases, build, check the platform, tag, smoke-test, push.

The build goes through the engine's classic builder (`engineapi.build`) or BuildKit
(`buildkit.build`), as the health probe chose for the job's platform there (`pools.Backend`);
everything before and after it is the same calls on the engine's API.

`EngineWork.run` returns what the go came to (`builder.farm.results.EngineRun`), also when it
fails: the runner decides whether the engine went away (then the job is built again elsewhere)
or the job failed. Shared by the run's job threads: each engine's push slots, and the RUN
steps under way, which a Ctrl-C kills.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterable, Iterator

from builder.attest.image import without_sbom
from builder.farm import attestations, buildkit
from builder.farm import engineapi
from builder.farm import engines
from builder.model.builders import BUILDKIT, Engine
from builder.farm.engineapi import Container, Output, PushedImage, Step
from builder.farm.pools import Backend
from builder.farm.progress import Progress
from builder.farm.results import EngineRun, Phase
from builder.model.errors import BuilderError
from builder.model.reference import ImageRef
from builder.model.smoke import Outcome
from builder.plan.dockerfile import needs_host_network
from builder.plan.identity import HASH_LABEL, Prepared
from builder.plan.plan import BuildJob
from builder.registry.client import Registries, RegistryClient, RegistryError

BUILD_TIMEOUT = 3600  # seconds without a byte from the engine: a RUN under QEMU can be quiet long


def compressed(client: RegistryClient, image: ImageRef, digest: str) -> int | None:
    """The image's compressed size, from its manifest: read once per run (a release's later
    stages read it anyway, and the skip check has just read it)."""
    try:
        return client.get_manifest(image.repository, digest).layers_size
    except RegistryError:
        return None  # a size for the report only: the push or the skip stands


@contextmanager
def timed(phases: list[Phase], name: str, engine: str) -> Iterator[None]:
    """Record phase `name` on `engine`, also when it raises: the timeline shows where it
    stopped."""
    began = time.time()
    try:
        yield
    finally:
        phases.append(Phase(name, engine, began, time.time()))


def go_on(cancelled: threading.Event, before: str) -> None:
    """Stop the job (a BuilderError) once the run is cancelled."""
    if cancelled.is_set():
        raise BuilderError(f"interrupted before {before}")


class EngineWork:
    def __init__(self, pool_engines: Iterable[Engine], *, push: bool, nocache: bool,
                 registries: Registries, cancelled: threading.Event,
                 attest: bool = False) -> None:
        self.push = push
        self.attest = attest and push  # attestations are about pushed images: their digests
        self.nocache = nocache
        self.registries = registries
        self.cancelled = cancelled
        self.progress: Progress | None = None  # the run's, set when it starts
        self._pushes = {e.name: threading.Semaphore(e.pushes) for e in pool_engines}
        self._lock = threading.Lock()
        # job key → what stops its build: kill its RUN step's container, or end its buildx
        self._stops: dict[str, Callable[[], None]] = {}

    def kill_all(self) -> None:
        """Stop every build under way (Ctrl-C)."""
        with self._lock:
            running = list(self._stops.values())
        for stop in running:
            stop()

    def run(self, engine: Engine, job: BuildJob, prepared: Prepared, pulls: tuple[str, ...],
            log, *, emulated: bool = False, backend: Backend = Backend()) -> EngineRun:
        """Build, test and push `job` on `engine`, from the start, as far as it gets; `pulls`
        are the images the engine pulls first; `emulated`: the engine builds the job's
        platform under emulation; `backend`: how it builds it. Each phase is timed, the last
        one too when it fails."""
        run = EngineRun(engine.name, time.time(), emulated=emulated, builder=backend.builder)
        phases: list[Phase] = []
        api = None
        try:
            log.write(f"--- build on engine {engine.name} ({engine.url}), "
                      f"{backend.builder} builder ---\n")
            self.progress.update(job.key, "building", engine=engine.name)
            api = engines.connect(engine, timeout=BUILD_TIMEOUT)
            if pulls:
                with timed(phases, "pull", engine.name):
                    self._pull(api, engine, job, pulls, log)
            with timed(phases, "build", engine.name):
                run = replace(run, image_id=self._build(api, engine, job, prepared, log, backend,
                                                        pulls))
            run = replace(run, checks=self._smoke_test(api, engine, job, run.image_id, phases,
                                                         log))
            _check_smoke(run.checks)
            found = self._inventory(api, engine, job, prepared, run.image_id, phases, log)
            run = replace(run, built=time.time())
            if self.push:
                pushed = self._push(api, engine, job, phases, log)
                run = replace(run, pushed=pushed, compressed=compressed(
                    self.registries.client(job.image.registry), job.image, pushed.digest))
            if self.attest:
                run = replace(run, attestation=self._attest(api, engine, job, prepared, run,
                                                            found, phases))
        except Exception as error:  # noqa: BLE001 - a dropped stream surfaces as urllib3's own
            return replace(run, error=error, phases=tuple(phases))
        finally:
            with self._lock:
                self._stops.pop(job.key, None)
            if api is not None:
                api.close()
        return replace(run, finished=time.time(), phases=tuple(phases))

    def _push(self, api, engine: Engine, job: BuildJob, phases: list[Phase], log) -> PushedImage:
        self.progress.update(job.key, "pushing", f"waiting for a push slot on {engine.name}")
        with self._pushes[engine.name], timed(phases, "push", engine.name):
            go_on(self.cancelled, "its push; nothing of it was pushed")
            self.progress.update(job.key, "pushing", str(job.image))
            return engineapi.push_image(api, job, self.registries.client(job.image.registry),
                                        lambda line: log.write(line + "\n"))

    def _smoke_test(self, api, engine: Engine, job: BuildJob, image_id: str,
                    phases: list[Phase], log) -> tuple[Outcome, ...]:
        """The job's smoke tests, each run in the image just built."""
        if not job.checks:
            return ()
        go_on(self.cancelled, "its smoke tests; nothing of it was pushed")
        self.progress.update(job.key, "testing", f"{len(job.checks)} smoke tests")
        with timed(phases, "smoke test", engine.name):
            return tuple(engineapi.run_checks(api, image_id, job.checks, job.version.full,
                                              job.platform, lambda line: log.write(line + "\n")))

    def _inventory(self, api, engine: Engine, job: BuildJob, prepared: Prepared, image_id: str,
                   phases: list[Phase], log):
        """What the image holds, for its SBOM, CPython's own SBOM with it: none for a Windows
        image (provenance only)."""
        if not self.attest or without_sbom(job.platform.os):
            return None
        go_on(self.cancelled, "its inventory; nothing of it was pushed")
        self.progress.update(job.key, "testing", "inventory")
        with timed(phases, "inventory", engine.name):
            found = attestations.read_inventory(
                api, image_id, job.platform, lambda line: log.write(line + "\n"),
                readers=1 if engine.over_ssh else attestations.READERS)
            return attestations.with_cpython_sbom(found, job, prepared.mirrors)

    def _attest(self, api, engine: Engine, job: BuildJob, prepared: Prepared, run: EngineRun,
                found, phases: list[Phase]) -> dict:
        """Push the image's attestation manifest; its descriptor for the tags' indexes."""
        self.progress.update(job.key, "pushing", "attestations")
        with timed(phases, "attest", engine.name):
            build = attestations.facts(api, job, prepared, started=run.started,
                                       finished=run.built, engine=engine.name,
                                       emulated=run.emulated)
            return attestations.attest(self.registries.client(job.image.registry), job,
                                       run.pushed.digest, build, found)

    def _pull(self, api, engine: Engine, job: BuildJob, pulls: tuple[str, ...], log) -> None:
        """Pull the bases (and a parent built elsewhere) onto `engine`."""
        def pulling(line: str) -> None:
            go_on(self.cancelled, "its pull ended; nothing was built")
            log.write(line + "\n")

        for base in pulls:
            engineapi.pull(api, engine, base, job.platform, pulling,
                           registry=self.registries.client(ImageRef.parse(base).registry))

    def _build(self, api, engine: Engine, job: BuildJob, prepared: Prepared, log,
               backend: Backend, pulls: tuple[str, ...]) -> str:
        """Build, check the platform, tag; returns the image id."""
        def on_event(event: object) -> None:
            if isinstance(event, (Container, buildkit.Stoppable)):
                stop = event.stop if isinstance(event, buildkit.Stoppable) else \
                    (lambda: engineapi.kill(engine, event.id))
                with self._lock:
                    self._stops[job.key] = stop
                if self.cancelled.is_set():  # Ctrl-C came before this build could be stopped
                    stop()
            elif isinstance(event, Step):
                # Steps other than RUN have no container to kill: the job stops at the next one.
                go_on(self.cancelled, f"step {event.number}/{event.total}; nothing was pushed")
                self.progress.update(job.key, "building", f"step {event.number}/{event.total}")
            elif isinstance(event, Output):
                log.write(event.text)

        labels = {HASH_LABEL: prepared.build_hash}
        host_network = needs_host_network(prepared.mirrors)
        if backend.builder == BUILDKIT:
            hosts = {job.image.registry, *(ImageRef.parse(image).registry for image in pulls)}
            buildkit.build(engine, prepared.dockerfile, job.image, job.platform,
                           build_args=job.build_args, labels=labels, nocache=self.nocache,
                           credentials={h: self.registries.client(h).credentials() for h in hosts},
                           on_event=on_event, host_network=host_network, quiet=BUILD_TIMEOUT)
            image_id = api.inspect_image(str(job.image))["Id"]  # --load tagged it
        else:
            image_id = engineapi.build(api, engine, prepared.context, job.platform,
                                       build_args=job.build_args, labels=labels,
                                       nocache=self.nocache, on_event=on_event,
                                       host_network=host_network)
        engineapi.check_platform(api, engine, image_id, job.platform, lambda variant:
                                 backend.wrong_platform(engine.name, job.platform, variant))
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
