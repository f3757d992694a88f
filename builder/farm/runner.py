"""Stage build: run a plan: probe the engines, pin bases, skip what the registry already holds,
build, check, push.

Each job runs in its own thread. Before any starts, every engine of a pool is probed
(`builder.farm.health`): one that fails is left out, one claiming a platform it cannot run is not
used for it, and a platform with no healthy engine has its jobs skipped, saying why. A ready job
then takes a slot on the engine of its pool that `builder.farm.pools.choose` picks (a free slot, the
least work, the parent's engine first); when jobs wait for the same engines, the one with the
longest chain of jobs still to build under it goes first (`pools.assign`). An engine's
`concurrency` bounds its builds and its `push-concurrency` its pushes. A job whose engine goes away under it is built again from the
start, once, on another engine of its pool; a failed RUN step or smoke test is not. A failed job
fails alone: the others go on, and nothing of the failed job is tagged in the registry (push
comes after the platform check).

Base images. A FROM without a registry host is a Docker Hub name; it is looked up in the
base mirror (``<mirror>/library/busybox``) and pinned to the per-platform manifest digest:
``FROM <mirror>/library/busybox@sha256:…``. Pinning avoids the classic builder's habit of
going to docker.io when a local tag has another platform (docs/classic-builder.md,
trap 4), and the
digest feeds the build hash. A FROM of another variant of the same version builds after
that variant and is pinned to its image.

Build hash. sha256 over the Dockerfile as sent (FROM pinned), the other context files,
the build args and the platform; stored in the image label `HASH_LABEL`. When the
registry already holds the per-arch image with that label, the job is skipped.
"""
from __future__ import annotations

import io
import itertools
import json
import sys
import tarfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

from builder.farm import engineapi
from builder.farm import engines
from builder.farm import health
from builder.farm import pools
from builder.registry import retry
from builder.model import versions
from builder.farm.builders import Engine
from builder.plan.dockerfile import from_images, needs_host_network, rewrite_from, rewrite_urls
from builder.farm.engineapi import Container, Output, PushedImage, Step
from builder.mirror.config import Mirror
from builder.model.naming import check_registry
from builder.model.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BuilderError, InputError
from builder.plan.plan import BuildJob, Plan, SkippedJob
from builder.plan.plan import plan as make_plan
from builder.model.platforms import Platform
from builder.farm.pools import Health, Load
from builder.farm.progress import Progress, table
from builder.model.reference import DOCKER_HUB, FOREIGN_LAYER_TYPES, ImageRef, sha256_digest
from builder.registry.client import DEFAULT_CONCURRENCY, Registries, RegistryClient, RegistryError
from builder.model.report import Report, Status
from builder.model.smoke import Outcome
from builder.report import write as html_report

HASH_LABEL = "org.python-image-builder.build-hash"
BUILD_TIMEOUT = 3600  # seconds without a byte from the engine: a RUN under QEMU can be quiet long


@dataclass(frozen=True)
class Failover:
    """A job's engine went away under it; the job was built again from the start elsewhere."""
    engine: str  # the engine it was on
    cause: str
    at: float  # epoch seconds

    def as_dict(self) -> dict:
        return {"engine": self.engine, "cause": self.cause, "at": self.at}


@dataclass(frozen=True)
class Phase:
    """A phase of a job on one engine (pull, build, smoke test, push) as it ran; one that an
    error or a lost engine cut short is there too, up to that moment."""
    name: str
    engine: str
    started: float  # epoch seconds
    finished: float

    def as_dict(self) -> dict:
        return {"phase": self.name, "engine": self.engine, "started": self.started,
                "finished": self.finished}


class _NotBuilt(Exception):
    """A job skipped at run time: no healthy engine in its pool, or its parent was skipped so."""


@dataclass
class JobResult:
    key: str
    platform: str  # official name: arm32v7
    engine: str | None  # the engine that built it (the last one tried, if it failed)
    status: Status  # BUILT, SKIPPED or FAILED
    reason: str = ""  # why skipped or failed
    image: str | None = None  # the per-arch reference
    image_id: str | None = None
    build_hash: str | None = None
    digest: str | None = None  # in the registry: pushed now, or found unchanged
    pushed: PushedImage | None = None
    started: float | None = None  # epoch seconds: the engine slot was taken
    finished: float | None = None
    built: float | None = None  # epoch seconds: the build (and its smoke tests) ended
    log: Path | None = None
    checks: list[Outcome] = field(default_factory=list)  # the smoke tests, as they ran
    mirrors: tuple[Mirror, ...] = ()  # the mirrors its Dockerfile fetched from
    failovers: list[Failover] = field(default_factory=list)
    unserved: bool = False  # skipped at run time: no healthy engine in its pool (exit 1)
    retries: int = 0  # transient registry failures its pulls, push and lookups got past
    phases: list[Phase] = field(default_factory=list)  # on every engine it was tried on
    emulated: bool = False  # its (last) engine built it under emulation (QEMU)
    compressed: int | None = None  # its image's layers in the registry, compressed (bytes)

    @contextmanager
    def timed(self, phase: str, engine: str) -> Iterator[None]:
        """Record `phase` on `engine`, also when it raises: the timeline shows where it stopped."""
        began = time.time()
        try:
            yield
        finally:
            self.phases.append(Phase(phase, engine, began, time.time()))

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def as_dict(self) -> dict:
        """For the release report (JSON)."""
        return {"job": self.key, "platform": self.platform, "engine": self.engine,
                "status": self.status.value, "reason": self.reason, "image": self.image,
                "image_id": self.image_id, "build_hash": self.build_hash,
                "digest": self.digest, "size": self.pushed.size if self.pushed else None,
                "pushed": [str(self.pushed.reference)] if self.pushed else [],
                "started": self.started, "built": self.built, "finished": self.finished,
                "checks": [c.as_dict() for c in self.checks],
                "mirrors": [{"name": m.name, "upstream": m.upstream, "url": m.url}
                            for m in self.mirrors],
                "failovers": [f.as_dict() for f in self.failovers],
                "retries": self.retries, "emulated": self.emulated,
                "compressed": self.compressed,
                "phases": [p.as_dict() for p in self.phases],
                "log": str(self.log) if self.log else None}


@dataclass
class BuildRun:
    plan: Plan
    results: list[JobResult]
    interrupted: bool = False  # Ctrl-C: jobs that had not finished are failed "interrupted"
    planned: bool = False  # --dry-run: the plan only, nothing ran
    health: Health = field(default_factory=Health)  # what the probes before the run found

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if r.status is Status.FAILED]

    @property
    def unserved(self) -> list[JobResult]:
        """Jobs skipped because no engine of their pool was healthy: not built, not done."""
        return [r for r in self.results if r.unserved]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failures or self.unserved else EXIT_OK

    def add_to(self, report: Report) -> None:
        """The build stage's entry and every job's result."""
        if self.planned:
            report.stage("build", Status.PLANNED, jobs=len(self.plan.jobs),
                         skipped=len(self.plan.skipped))
            return
        report.jobs = [r.as_dict() for r in self.results]
        counts = Counter(r.status.value for r in self.results)
        # Only what happened: a run of healthy engines and no failover reads as before pools.
        details = {}
        if self.health.lines():
            details["engines"] = self.health.as_dict()
        failovers = sum(len(r.failovers) for r in self.results)
        if failovers:
            details["failovers"] = failovers
        if self.unserved:
            details["unserved"] = [u.key for u in self.unserved]
        if self.failures or self.unserved or self.interrupted:
            counts.pop(Status.FAILED.value, None)
            reasons = ([f"{len(self.failures)} job(s) failed"] if self.failures else []) + \
                ([f"{len(self.unserved)} job(s) skipped: no healthy engine"]
                 if self.unserved else [])
            report.stage("build", Status.FAILED, **counts, **details,
                         failed=[f.key for f in self.failures],
                         reason="interrupted" if self.interrupted else "; ".join(reasons))
        else:
            report.stage("build", Status.OK, **counts, **details)

    def table(self) -> str:
        """The end-of-run table, then a line for every failover."""
        rows = table([(r.key, r.engine or "-", r.status.value, r.digest or "-",
                       f"{r.seconds:.1f}s" if r.seconds is not None else "-")
                      for r in self.results])
        moved = [f"failover: {r.key}: {f.cause}; built again from the start on {r.engine}: "
                 f"{r.status.value}" for r in self.results for f in r.failovers]
        return "\n".join([rows, *moved])


@dataclass(frozen=True)
class Prepared:
    dockerfile: str  # FROM lines pinned, upstream URLs rewritten to their mirrors
    context: bytes  # the tar sent to the engine
    build_hash: str
    bases: tuple[str, ...]  # pinned registry references the engine pulls first: repo@sha256:…
    mirrors: tuple[Mirror, ...] = ()  # the mirrors the Dockerfile as sent fetches from


def build_hash(dockerfile: str, build_args: dict[str, str], platform: str) -> str:
    """The content identity of a build (pinned base digests are part of `dockerfile`)."""
    # "files" stays, empty: the context once took other files from the tree, and the images
    # hashed then keep their hashes.
    document = {"dockerfile": dockerfile, "platform": platform, "build_args": build_args,
                "files": {}}
    return sha256_digest(json.dumps(document, sort_keys=True).encode())


def context_tar(dockerfile: str) -> bytes:
    """The build context: the Dockerfile as sent, alone. It is what generate writes for the
    job's directory (render writes only Dockerfiles); nothing is read from the tree, so no
    untracked or temporary file, and no symlink out of the tree, reaches an engine."""
    buffer = io.BytesIO()
    data = dockerfile.encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Runner:
    """Runs one plan; thread-safe caches of pinned bases, and the board of engine slots the jobs
    take as they become ready. The registry clients are the run's (`registries`), so every job
    thread shares each registry's pool and limit."""

    def __init__(self, plan: Plan, *, push: bool, force: bool, nocache: bool, logs: Path,
                 progress: Progress | None = None, registries: Registries | None = None,
                 read_back: bool = False) -> None:
        """`progress` may come with `run` instead: the probes before it print plain lines."""
        self.plan = plan
        self.push = push
        self.force = force
        self.nocache = nocache
        self.logs = logs
        self.progress = progress
        self.engines = {e.name: e for e in plan.builders.engines}
        self.health = Health()
        # The board: every engine's running and taken jobs, and the engines lost mid-run.
        self._board = threading.Condition()
        self._running = Counter({name: 0 for name in self.engines})
        self._taken = Counter({name: 0 for name in self.engines})
        self._lost: dict[str, str] = {}
        # The jobs waiting for a slot, and each one's remaining chain in jobs: when a slot
        # frees, the waiting job with the longest chain under it takes it (`pools.assign`).
        self._waiting: dict[str, pools.Waiting] = {}
        self._arrivals = itertools.count()
        self._chains = pools.chains({job.key: job.parent for job in plan.jobs}, lambda key: 1.0)
        self._pushes = {e.name: threading.Semaphore(e.pushes) for e in plan.builders.engines}
        self.results: dict[str, JobResult] = {}
        self.done = {job.key: threading.Event() for job in plan.jobs}
        self.registries = registries or Registries(target=plan.registry)
        self.read_back = read_back  # a release's later stages will read what is pushed
        self._pins: dict[tuple[str, str], str] = {}
        self._base_digests: dict[str, str] = {}  # a base's tag, read once: every platform pins one list
        self._base_lock = threading.Lock()
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self._containers: dict[str, tuple[Engine, str]] = {}  # job key → its running RUN step

    def probe(self) -> Health:
        """Probe every engine some job's pool holds, for the platforms of those jobs."""
        needed: dict[str, dict[str, Platform]] = {}
        for job in self.plan.jobs:
            for name in job.pool:
                needed.setdefault(name, {})[job.platform.name] = job.platform
        self.health = health.check([self.engines[name] for name in needed],
                                   {name: tuple(found.values()) for name, found in needed.items()},
                                   self._probe_image)
        return self.health

    def _probe_image(self, platform: Platform) -> health.ProbeImage | None:
        """The first base image of the platform's first job built FROM outside the family,
        pinned as its build will pin it; None when it cannot be."""
        for job in self.plan.jobs:
            images = from_images(job.dockerfile_text)  # none: FROM scratch
            if job.platform == platform and not job.parent and images:
                try:
                    pinned = self._pin(images[0], job)
                    return health.ProbeImage(
                        pinned, self._registry(ImageRef.parse(pinned).registry).credentials())
                except BuilderError:
                    return None  # the job's own pin will fail and say why
        return None

    def run(self, progress: Progress | None = None) -> BuildRun:
        """Every job; on Ctrl-C, stop: no job starts or pushes any more, running RUN steps are
        killed, and the run comes back (interrupted) once the threads have noticed."""
        self.progress = progress or self.progress
        skipped = [self._skipped(s) for s in self.plan.skipped]
        pool = ThreadPoolExecutor(max_workers=max(1, len(self.plan.jobs)))
        futures = [pool.submit(self._job, job) for job in self.plan.jobs]
        try:
            wait(futures)
        except KeyboardInterrupt:
            self.cancel()
            wait(futures)
        finally:
            pool.shutdown()
        return BuildRun(self.plan, [self.results[j.key] for j in self.plan.jobs] + skipped,
                        interrupted=self.cancelled.is_set(), health=self.health)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._board:
            self._board.notify_all()
        with self._lock:
            running = list(self._containers.values())
        for engine, container in running:
            engineapi.kill(engine, container)

    def _go_on(self, job: BuildJob, before: str) -> None:
        if self.cancelled.is_set():
            raise BuilderError(f"interrupted before {before}")

    def _skipped(self, job: SkippedJob) -> JobResult:
        self.progress.update(job.key, "skipped", job.reason)
        return JobResult(job.key, job.platform.name, None, Status.SKIPPED, job.reason)

    def _job(self, job: BuildJob) -> None:
        log_path = self.logs / job.version.full / job.variant.name / f"{job.platform.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        result = JobResult(job.key, job.platform.name, None, Status.FAILED,
                           image=str(job.image), log=log_path)
        try:
            # Line-buffered, so `tail -f` on a long build shows each line as it comes.
            with log_path.open("w", buffering=1) as log, \
                    retry.scope(lambda line: self._retrying(job, log, line),
                                self.cancelled) as retried:
                try:
                    self._attempt(job, result, log)
                finally:
                    result.retries = retried.retries
        except _NotBuilt as why:
            result.status, result.reason, result.unserved = Status.SKIPPED, str(why), True
            self.progress.update(job.key, "skipped", result.reason)
        except BuilderError as error:
            reason = str(error)
            if self.cancelled.is_set() and not reason.startswith("interrupted"):
                reason = f"interrupted: {reason}"
            if result.failovers:
                first = result.failovers[0]
                reason += f" (on {result.engine}, after engine {first.engine} went away)"
            # The one place a failure gets its job's key: the raise sites leave it out.
            result.status, result.reason = Status.FAILED, f"{job.key}: {reason}"
        except Exception as error:  # a bug must fail its job, not hang the jobs waiting on it
            result.status = Status.FAILED
            result.reason = f"{job.key}: {type(error).__name__}: {error}"
        finally:
            result.finished = result.finished or time.time()
            self.results[job.key] = result
            self.done[job.key].set()
        if result.status is Status.FAILED:
            self.progress.update(job.key, "failed", result.reason)
            with log_path.open("a") as log:
                log.write(f"\nFAILED: {result.reason}\n")

    def _retrying(self, job: BuildJob, log, line: str) -> None:
        log.write(line + "\n")
        self.progress.update(job.key, "retrying", line)

    def _attempt(self, job: BuildJob, result: JobResult, log) -> None:
        parent = self._wait_parent(job)
        self._go_on(job, "it started")
        pool = [self.engines[name] for name in job.pool]
        if not any(self.health.usable(e.name, job.platform.name) for e in pool):
            raise _NotBuilt(self.health.no_engine_reason(job.platform, pool))
        self.progress.update(job.key, "resolving", "pinning base images")
        prepared = self._prepare(job, parent)
        result.build_hash, result.mirrors = prepared.build_hash, prepared.mirrors
        via = "".join(f"\n  {m.upstream} from mirror {m.name} ({m.url})" for m in prepared.mirrors)
        log.write(f"job {job.key}, pool {' | '.join(job.pool)}, build hash "
                  f"{prepared.build_hash}{via}\n"
                  f"--- Dockerfile as sent ---\n{prepared.dockerfile}")
        if self.push and not self.force:
            found = engineapi.registered(self._registry(job.image.registry), job.image, HASH_LABEL)
            if found and found[1] == prepared.build_hash:
                result.status, result.digest = Status.SKIPPED, found[0]
                result.compressed = self._compressed(job.image, found[0])
                result.reason = f"unchanged: {job.image} has build hash {prepared.build_hash}"
                log.write(result.reason + "\n")
                self.progress.update(job.key, "skipped", result.reason)
                return
        self.progress.update(job.key, "queued", f"waiting for a slot in {' | '.join(job.pool)}")
        tried: set[str] = set()
        while True:
            engine = self._take(job, parent, tried)
            try:
                self._on(engine, job, parent, prepared, result, log)
                break
            except Exception as error:  # noqa: BLE001 - a dropped stream surfaces as urllib3's own
                gone = None if self.cancelled.is_set() else health.unreachable(engine, error)
                if gone is None:
                    raise
                self._failover(job, engine, gone, result, log)
                tried.add(engine.name)
            finally:
                self._give_back(engine)
        result.status = Status.BUILT
        served = f" (sources from mirror {', '.join(m.name for m in result.mirrors)})" \
            if result.mirrors else ""
        self.progress.update(job.key, "done", (result.digest or result.image_id or "") + served,
                             engine=engine.name)
        if self.read_back and result.pushed:
            self._read_back(job.image, result.pushed.digest)

    def _read_back(self, image: ImageRef, digest: str) -> None:
        """Read what publish and the pages will need of a pushed image (manifest, config, layer
        HEADs) into the run's cache now, while the other jobs still build, rather than after
        the last push."""
        client = self._registry(image.registry)
        try:
            manifest = client.get_manifest(image.repository, digest)
            client.get_config(image.repository, manifest)
            for layer in manifest.json.get("layers") or []:
                if layer.get("mediaType") not in FOREIGN_LAYER_TYPES:
                    client.head_blob(image.repository, layer["digest"])
        except RegistryError:
            pass  # publish reads the image again, and says what is wrong with it

    def _compressed(self, image: ImageRef, digest: str) -> int | None:
        """The image's compressed size, from its manifest: read once per run (a release's
        later stages read it anyway, and the skip check has just read it)."""
        try:
            return self._registry(image.registry).get_manifest(image.repository,
                                                                digest).layers_size
        except RegistryError:
            return None  # a size for the report only: the push or the skip stands

    def _failover(self, job: BuildJob, engine: Engine, gone: health.EngineUnreachable,
                  result: JobResult, log) -> None:
        """Record that `engine` went away under `job`; raise if the job had its one retry."""
        if not gone.answers:
            with self._board:
                self._lost[engine.name] = str(gone)
                self._board.notify_all()
        if result.failovers:
            raise gone
        result.failovers.append(Failover(engine.name, str(gone), time.time()))
        result.image_id = None  # the partial build there is not used
        log.write(f"\nFAILOVER: {gone}; building again from the start on another engine of "
                  f"its pool\n")
        self.progress.update(job.key, "queued", f"failover: {gone}", engine="-")

    def _take(self, job: BuildJob, parent: JobResult | None, tried: set[str]) -> Engine:
        """A build slot on the engine `pools.assign` gives this job; waits while the pool is
        full or a job with a longer chain waits for the same engines."""
        pool = [name for name in job.pool if self.health.usable(name, job.platform.name)]
        local_parent = parent is not None and parent.digest is None
        if local_parent:
            # The parent image is on the engine that built it, and nowhere else.
            pool = [name for name in pool if name == parent.engine]
        with self._board:
            since = next(self._arrivals)
            try:
                while True:
                    self._go_on(job, "its build started")
                    left = [name for name in pool if name not in self._lost and name not in tried]
                    if not left and local_parent:
                        raise BuilderError(f"its parent {job.parent} was not pushed, and its "
                                           f"image is on engine {parent.engine} only, which is gone")
                    if not left:
                        gone = "; ".join(f"{name}: {self._lost.get(name, 'it failed this job')}"
                                         for name in pool)
                        raise BuilderError(f"no engine of its pool is left to build it on ({gone})")
                    self._waiting[job.key] = pools.Waiting(
                        job.key, tuple(left), parent.engine if parent else None,
                        self._chains[job.key], since)
                    chosen = pools.assign(list(self._waiting.values()), self._loads()).get(job.key)
                    if chosen:
                        self._running[chosen] += 1
                        self._taken[chosen] += 1
                        self._board.notify_all()  # the next waiting job may have its turn now
                        return self.engines[chosen]
                    self._board.wait(timeout=1.0)  # and look at `cancelled` again
            finally:
                self._waiting.pop(job.key, None)

    def _loads(self) -> list[Load]:
        """Every engine not lost, as busy as it is now, in the builders file's order."""
        return [Load(name, self._running[name], engine.concurrency, self._taken[name])
                for name, engine in self.engines.items() if name not in self._lost]

    def _give_back(self, engine: Engine) -> None:
        with self._board:
            self._running[engine.name] -= 1
            self._board.notify_all()

    def _on(self, engine: Engine, job: BuildJob, parent: JobResult | None, prepared: Prepared,
            result: JobResult, log) -> None:
        """Build, test and push `job` on `engine`, from the start."""
        result.engine, result.started = engine.name, time.time()
        result.emulated = (engine.name, job.platform.name) in self.health.emulated
        log.write(f"--- build on engine {engine.name} ({engine.url}) ---\n")
        self.progress.update(job.key, "building", engine=engine.name)
        api = engines.connect(engine, timeout=BUILD_TIMEOUT)
        try:
            pulls = prepared.bases
            if parent is not None and parent.digest and parent.engine != engine.name:
                pulls = (_parent_pin(parent), *pulls)  # built elsewhere: pulled with our credentials
            if pulls:
                with result.timed("pull", engine.name):
                    self._pull(api, engine, job, pulls, log)
            with result.timed("build", engine.name):
                result.image_id = self._build(api, engine, job, prepared, log)
            self._smoke_test(api, job, result, log)
            result.built = time.time()
            if self.push:
                self.progress.update(job.key, "pushing", f"waiting for a push slot on {engine.name}")
                with self._pushes[engine.name], result.timed("push", engine.name):
                    self._go_on(job, "its push; nothing of it was pushed")
                    self.progress.update(job.key, "pushing", str(job.image))
                    pushed = engineapi.push_image(api, job, self._registry(job.image.registry),
                                                  lambda line: log.write(line + "\n"))
                result.pushed, result.digest = pushed, pushed.digest
                result.compressed = self._compressed(job.image, pushed.digest)
        finally:
            with self._lock:
                self._containers.pop(job.key, None)
            api.close()
        result.finished = time.time()

    def _smoke_test(self, api, job: BuildJob, result: JobResult, log) -> None:
        """Fail the job, before anything of it is pushed, unless every smoke test passes."""
        if not job.checks:
            return
        self._go_on(job, "its smoke tests; nothing of it was pushed")
        self.progress.update(job.key, "testing", f"{len(job.checks)} smoke tests")
        with result.timed("smoke test", result.engine):
            result.checks = engineapi.run_checks(api, result.image_id, job.checks,
                                                 job.version.full, job.platform,
                                                 lambda line: log.write(line + "\n"))
        failed = [c for c in result.checks if not c.passed]
        if failed:
            first = failed[0]
            output = " | ".join(first.output.strip().splitlines()[-3:])
            raise BuilderError(f"smoke test {first.name} failed ({first.problem})"
                               f"{': ' + output if output else ''}"
                               f"{f'; {len(failed) - 1} more failed' if len(failed) > 1 else ''}"
                               "; nothing was pushed")

    def _wait_parent(self, job: BuildJob) -> JobResult | None:
        if not job.parent:
            return None
        self.progress.update(job.key, "queued", f"after {job.parent}")
        self.done[job.parent].wait()
        parent = self.results[job.parent]
        if parent.status is Status.FAILED:
            raise BuilderError(f"not built, its parent {job.parent} failed")
        if parent.status is Status.SKIPPED and parent.digest is None:
            raise _NotBuilt(f"its parent {job.parent} is skipped: {parent.reason}")
        return parent

    def _prepare(self, job: BuildJob, parent: JobResult | None) -> Prepared:
        pins, bases = {}, []
        for image in from_images(job.dockerfile_text):
            if parent and image == job.variant.base_image:
                # The parent's registry digest when it has one, else its local image id: then
                # the job takes a slot only on the engine that built the parent (Runner._take).
                pins[image] = _parent_pin(parent) if parent.digest else parent.image_id
            else:
                pins[image] = self._pin(image, job)
                bases.append(pins[image])
        dockerfile, used = rewrite_urls(rewrite_from(job.dockerfile_text, pins),
                                        self.plan.builders.mirrors)
        return Prepared(dockerfile, context_tar(dockerfile),
                        build_hash(dockerfile, job.build_args, job.platform.oci),
                        tuple(bases), used)

    def _pin(self, image: str, job: BuildJob) -> str:
        """`image` pinned to the digest of its `job.platform` manifest."""
        key = (image, job.platform.name + (job.platform.os_version or ""))
        with self._lock:
            if key in self._pins:
                return self._pins[key]
        ref = ImageRef.parse(image)
        mirror = self.plan.builders.base_mirror
        host = mirror if ref.registry == DOCKER_HUB and mirror else ref.registry
        try:
            manifest = self._registry(host).resolve_platform(
                ImageRef(host, ref.repository, ref.tag, self._base_digest(host, ref)),
                job.platform)
        except RegistryError as error:
            hint = ("; Docker Hub is out of reach: set base-mirror in the builders file "
                    "or BUILDER_BASE_MIRROR to a registry holding library/… images"
                    if host == DOCKER_HUB else "")
            raise BuilderError(f"cannot pin base image {image} for "
                               f"{job.platform.oci}: {error}{hint}") from None
        pinned = f"{host}/{ref.repository}@{manifest.digest}"
        with self._lock:
            self._pins[key] = pinned
        return pinned

    def _base_digest(self, host: str, ref: ImageRef) -> str:
        """The digest `ref` has in `host` now, asked once per run (its document is cached)."""
        if ref.digest:
            return ref.digest
        key = f"{host}/{ref.repository}:{ref.tag}"
        with self._base_lock:  # one lookup per base; the jobs wanting it wait for it
            if key not in self._base_digests:
                self._base_digests[key] = self._registry(host).get_manifest(
                    ref.repository, ref.tag).digest
            return self._base_digests[key]

    def _registry(self, host: str) -> RegistryClient:
        return self.registries.client(host)

    def _pull(self, api, engine: Engine, job: BuildJob, pulls: tuple[str, ...], log) -> None:
        """Pull the bases (and a parent built elsewhere) onto `engine`."""
        def pulling(line: str) -> None:
            self._go_on(job, "its pull ended; nothing was built")
            log.write(line + "\n")

        for base in pulls:
            engineapi.pull(api, engine, base, job.platform, pulling,
                           credentials=self._registry(ImageRef.parse(base).registry).credentials())

    def _build(self, api, engine: Engine, job: BuildJob, prepared: Prepared, log) -> str:
        """Build, check the platform, tag; returns the image id."""
        def on_event(event: engineapi.Event) -> None:
            if isinstance(event, Container):
                with self._lock:
                    self._containers[job.key] = (engine, event.id)
                if self.cancelled.is_set():  # cancel() ran before this step's container was known
                    engineapi.kill(engine, event.id)
            elif isinstance(event, Step):
                # Steps other than RUN have no container to kill: the job stops at the next one.
                self._go_on(job, f"step {event.number}/{event.total}; nothing was pushed")
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


def hash_now(plan: Plan, registries: Registries | None = None
             ) -> Callable[[BuildJob, str | None], str]:
    """The build hash a job of `plan` gets now, without an engine: its bases pinned as a build
    pins them (through the run's `registries`), its parent (if any) at the given registry
    digest. Publish compares it with the label of an image this run did not build."""
    runner = Runner(plan, push=False, force=False, nocache=False, logs=Path(),
                    progress=Progress([]), registries=registries)
    jobs = {job.key: job for job in plan.jobs}

    def hash_of(job: BuildJob, parent_digest: str | None) -> str:
        parent = None
        if job.parent:
            parent = JobResult(job.parent, job.platform.name, None, Status.SKIPPED,
                               image=str(jobs[job.parent].image), digest=parent_digest)
        return runner._prepare(job, parent).build_hash

    return hash_of


def _parent_pin(parent: JobResult) -> str:
    """The pushed parent image by digest: `host/repository@sha256:…`."""
    return f"{ImageRef.parse(parent.image).familiar_repository}@{parent.digest}"


def run_plan(plan: Plan, *, push: bool = False, force: bool = False, nocache: bool = False,
             logs: str | Path = "logs", out: TextIO | None = None,
             registries: Registries | None = None, read_back: bool = False) -> BuildRun:
    """Probe the engines, then run every job of `plan`, showing the probes' findings, progress
    and then the table on `out`; failures are in the results, and each is also named on stderr
    with its log. `registries`: the run's registry clients, when a release shares them with its
    later stages; `read_back`: read each pushed image into their cache for those stages."""
    _check_push_target(push, plan.registry)
    out = out or sys.stdout
    runner = Runner(plan, push=push, force=force, nocache=nocache, logs=Path(logs),
                    registries=registries, read_back=read_back)
    for line in runner.probe().lines():
        print(line, file=out, flush=True)
    # The engine column shows the pool until a job takes a slot on one of its engines.
    progress = Progress([(j.key, "|".join(j.pool)) for j in plan.jobs]
                        + [(s.key, "-") for s in plan.skipped], out=out)
    try:
        result = runner.run(progress)
    finally:
        progress.close()
    print(result.table(), file=progress.out)
    for failure in result.failures:
        print(f"failed: {failure.reason} (log: {failure.log})", file=sys.stderr)
    for unserved in result.unserved:
        print(f"skipped: {unserved.key}: {unserved.reason}", file=sys.stderr)
    if result.interrupted:
        raise Interrupted(result)
    return result


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a build; `run` is what became of each job, for the report."""

    def __init__(self, run: BuildRun) -> None:
        super().__init__("interrupted")
        self.run = run


def _check_push_target(push: bool, registry: str | None) -> None:
    if registry:
        check_registry(registry)
    if push and not registry:
        raise InputError("--push needs --registry: where should the images go?", field="push")


@dataclass(frozen=True)
class BuildOptions:
    """`invoke build`'s options; `release` fills them from its own."""
    version: str
    variants: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    registry: str | None = None
    push: bool = False
    builders: str | None = None
    force: bool = False
    nocache: bool = False
    dry_run: bool = False
    logs: str = "logs"
    versions: str = "versions.yaml"
    arch_namespace: bool = False
    report: str | None = None
    registry_concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per registry
    out: str | None = "out"  # the HTML report: <out>/<repository>/index.html; None: none


def run(options: BuildOptions, out: TextIO | None = None, *,
        family: versions.Family | None = None, registries: Registries | None = None,
        read_back: bool = False) -> BuildRun:
    """`invoke build`: print the plan (dry-run: only that), run it, write the report.

    `family` is the loaded versions file and `registries` the run's registry clients when the
    caller has them already; `read_back` as for `run_plan`.
    """
    out = out or sys.stdout
    _check_push_target(options.push, options.registry)  # before any file is read: nothing was done
    report = Report("build", options.version, registry=options.registry)
    try:
        family = family or versions.load(options.versions)
        builders = engines.load(options.builders, require_engine=not options.dry_run)
        the_plan = make_plan(family, options.version, tuple(options.variants),
                             tuple(options.platforms), builders=builders,
                             registry=options.registry, arch_namespace=options.arch_namespace)
        report.version, report.repository = the_plan.version.full, the_plan.family.repository
        print(the_plan.describe(), file=out)
        if options.dry_run:
            return BuildRun(the_plan, [], planned=True)
        result = run_plan(the_plan, push=options.push, force=options.force,
                          nocache=options.nocache, logs=options.logs, out=out,
                          registries=registries or Registries(
                              concurrency=options.registry_concurrency,
                              target=options.registry),
                          read_back=read_back)
    except KeyboardInterrupt as error:
        # Interrupted while planning, or while jobs ran: the report says so, with each job.
        if isinstance(error, Interrupted):
            error.run.add_to(report)
        else:
            report.stage("build", Status.FAILED, reason="interrupted")
        html_report.save(report, EXIT_INTERRUPTED, json_path=options.report, html_dir=options.out)
        raise
    result.add_to(report)
    html_report.save(report, result.exit_code, json_path=options.report, html_dir=options.out)
    return result
