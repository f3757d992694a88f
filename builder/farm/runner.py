"""Stage build: run a plan: probe the engines, skip what the registry already holds, build,
check, push.

Each job runs in its own thread. Before any starts, the registries the run needs are asked
whether they answer (`builder.farm.preflight`: one that does not stops the run) while every
engine of a pool is probed (`builder.farm.health`): one that fails is left out, one claiming a
platform it cannot run is not used for it, and a platform with no healthy engine has its jobs
skipped, saying why. A ready job is prepared (`builder.plan.identity`: its bases pinned, its
build hash), then takes a slot on the engine of its pool that `builder.farm.pools.choose` picks
(a free slot, the least work, the parent's engine first); when jobs wait for the same engines,
the one with the longest chain of jobs still to build under it goes first (`pools.assign`). An
engine's `concurrency` bounds its builds and its `push-concurrency` its pushes. A job whose
engine goes away under it is built again from the start, once, on another engine of its pool; a
failed RUN step or smoke test is not. A failed job fails alone: the others go on, and nothing of
the failed job is tagged in the registry (push comes after the platform check).

A job's attempt returns a value (`builder.farm.results.Attempt`), and its result is made of that
in one place (`results.job_result`). When the registry already holds the per-arch image with
the job's build hash, the job is skipped.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from builder.farm import engineapi
from builder.farm import health
from builder.farm import pools
from builder.farm import preflight
from builder.model.builders import Engine
from builder.farm.pools import Health, Load
from builder.farm.onengine import EngineWork, compressed, go_on
from builder.farm.progress import Progress
from builder.farm.results import Attempt, BuildRun, Failover, JobResult, job_result
from builder.model.errors import BuilderError
from builder.model.platforms import Platform
from builder.model.reference import FOREIGN_LAYER_TYPES, ImageRef
from builder.model.report import Status
from builder.plan.dockerfile import from_images
from builder.plan.identity import HASH_LABEL, Prepared, parent_reference, pin_bases, prepare
from builder.plan.plan import BuildJob, Plan, SkippedJob
from builder.model import retry
from builder.registry.client import BadDocument, Registries, RegistryClient, RegistryError
from builder.registry.pins import BasePins


@dataclass(frozen=True)
class Hooks:
    """What the caller of a run does at two moments of it: `ready`, once the probes are done
    and before any job starts (what it raises stops the run with nothing built); `finished`,
    with each job's result as the job ends, from that job's thread (it must not raise)."""
    ready: Callable[[], None] = lambda: None
    finished: Callable[[JobResult], None] = lambda result: None


class _NotBuilt(Exception):
    """A job skipped at run time: no healthy engine in its pool, or its parent was skipped so."""


class Runner:
    """Runs one plan: the board of engine slots the jobs take as they become ready. The registry
    clients are the run's (`registries`), so every job thread shares each registry's pool and
    limit, and its bases' pins."""

    def __init__(self, plan: Plan, *, push: bool, force: bool, nocache: bool, logs: Path,
                 progress: Progress | None = None, registries: Registries | None = None,
                 read_back: bool = False, attest: bool = False, hooks: Hooks = Hooks()) -> None:
        """`progress` may come with `run` instead: the probes before it print plain lines.
        `attest`: each pushed image gets its attestation manifest (`builder.farm.attestations`).
        `hooks`: the caller's `Hooks.finished` (its `ready` is the caller's to call)."""
        self.plan = plan
        self.hooks = hooks
        self.push = push
        self.force = force
        self.logs = logs
        self.progress = progress
        self.engines = {e.name: e for e in plan.builders.engines}
        self.health = Health()
        self._answers: dict[str, Future] = {}  # host → its check before the run
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
        self.results: dict[str, JobResult] = {}
        self.done = {job.key: threading.Event() for job in plan.jobs}
        self.registries = registries or Registries(target=plan.registry)
        self.pins = BasePins(self.registries, plan.builders.base_mirror)
        self.read_back = read_back  # a release's later stages will read what is pushed
        self.cancelled = threading.Event()
        self.work = EngineWork(plan.builders.engines, push=push, nocache=nocache,
                               registries=self.registries, cancelled=self.cancelled,
                               attest=attest)

    def probe(self, answered: Callable[[], None] = lambda: None) -> Health:
        """Check the registries the run needs (`builder.farm.preflight`) while every engine
        some job's pool holds is probed for the platforms of those jobs; HostUnreachable, with
        no job started, when a registry some job that has an engine needs does not answer.
        `answered` is called once they all have, the engines' probe perhaps still under way
        (the build command shows its plan then)."""
        needed = health.wanted(self.plan)
        hosts = preflight.endpoints(self.plan, self.push, self.pins.host)
        with ThreadPoolExecutor(max_workers=len(hosts) + 1) as pool:
            self._answers = {e.host: pool.submit(self._registry(e.host).unanswered,
                                                 preflight.TIMEOUT) for e in hosts}
            probed = pool.submit(health.check, [self.engines[name] for name in needed],
                                 needed, self._probe_image)
            silent = {e: why for e in hosts if (why := self._answers[e.host].result())}
            if not silent:
                answered()
            self.health = probed.result()
        # A job no engine will take needs no registry: its skip says why, as before.
        problems = {e: why for e, why in silent.items() if any(map(self._served, e.jobs))}
        if problems:
            raise preflight.unreachable(problems)
        if silent:
            answered()
        return self.health

    def _served(self, job: BuildJob) -> bool:
        """Whether an engine of the job's pool is healthy for its platform, as probed."""
        return any(self.health.usable(name, job.platform.name) for name in job.pool)

    def _probe_image(self, platform: Platform) -> health.ProbeImage | None:
        """The first base image of the platform's first job built FROM outside the family,
        pinned as its build will pin it; None when it cannot be, or when the target registry
        or the base's does not answer (the run may stop before any emulation is used)."""
        for job in self.plan.jobs:
            images = from_images(job.dockerfile_text)  # none: FROM scratch
            if job.platform == platform and not job.parent and images:
                hosts = (job.image.registry, self.pins.host(ImageRef.parse(images[0])))
                if any(host in self._answers and self._answers[host].result() for host in hosts):
                    return None
                try:
                    pinned = self.pins.pin(images[0], job.platform)
                    return health.ProbeImage(
                        pinned, self._registry(ImageRef.parse(pinned).registry))
                except BuilderError:
                    return None  # the job's own pin will fail and say why
        return None

    def run(self, progress: Progress | None = None) -> BuildRun:
        """Every job; on Ctrl-C, stop: no job starts or pushes any more, running RUN steps are
        killed, and the run comes back (interrupted) once the threads have noticed."""
        self.progress = self.work.progress = progress or self.progress
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
        self.work.kill_all()

    def _skipped(self, job: SkippedJob) -> JobResult:
        self.progress.update(job.key, "skipped", job.reason)
        return JobResult(job.key, job.platform.name, None, Status.SKIPPED, job.reason)

    def _job(self, job: BuildJob) -> None:
        log_path = self.logs / job.version.full / job.variant.name / f"{job.platform.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        retries = 0
        try:
            # Line-buffered, so `tail -f` on a long build shows each line as it comes.
            with log_path.open("w", buffering=1) as log, \
                    retry.scope(lambda line: self._retrying(job, log, line),
                                self.cancelled) as retried:
                attempt = self._attempt(job, log)
                retries = retried.retries
        except Exception as error:  # a log that cannot be written fails its job, not the run
            attempt = Attempt(Status.FAILED, error=error)
        result = job_result(job, log_path, attempt, retries=retries,
                            interrupted=self.cancelled.is_set(), now=time.time())
        if result.unserved:
            self.progress.update(job.key, "skipped", result.reason)
        self.results[job.key] = result
        self.done[job.key].set()
        if result.status is Status.FAILED:
            self.progress.update(job.key, "failed", result.reason)
            with log_path.open("a") as log:
                log.write(f"\nFAILED: {result.reason}\n")
        self.hooks.finished(result)

    def _retrying(self, job: BuildJob, log, line: str) -> None:
        log.write(line + "\n")
        self.progress.update(job.key, "retrying", line)

    def _attempt(self, job: BuildJob, log) -> Attempt:
        """Wait for the parent, prepare, skip what the registry holds unchanged, else build on
        an engine of the pool. Every error ends here, as the attempt's value: a bug must fail
        its job, not hang the jobs waiting on it."""
        prepared = None
        try:
            parent = self._wait_parent(job)
            go_on(self.cancelled, "it started")
            if not self._served(job):
                raise _NotBuilt(self.health.no_engine_reason(
                    job.platform, [self.engines[name] for name in job.pool]))
            self.progress.update(job.key, "resolving", "pinning base images")
            prepared = self._prepare(job, parent)
            via = "".join(f"\n  {m.upstream} from mirror {m.name} ({m.url})"
                          for m in prepared.mirrors)
            log.write(f"job {job.key}, pool {' | '.join(job.pool)}, build hash "
                      f"{prepared.build_hash}{via}\n"
                      f"--- Dockerfile as sent ---\n{prepared.dockerfile}")
            attempt = self._unchanged(job, prepared, log) \
                or self._build_somewhere(job, parent, prepared, log)
            if attempt.status is Status.BUILT:
                self._done(job, attempt)
            return attempt
        except _NotBuilt as why:
            return Attempt(Status.SKIPPED, str(why), unserved=True)
        except Exception as error:
            return Attempt(Status.FAILED, prepared=prepared, error=error)

    def _unchanged(self, job: BuildJob, prepared: Prepared, log) -> Attempt | None:
        """Skipped: the registry holds the job's image with its build hash (unless forced)."""
        if not self.push or self.force:
            return None
        try:
            found = engineapi.registered(self._registry(job.image.registry), job.image,
                                         HASH_LABEL)
        except BadDocument as error:  # what is there cannot be trusted: build it over
            log.write(f"the registry's {job.image} is unreadable ({error}): building it again\n")
            return None
        if not found or found[1] != prepared.build_hash:
            return None
        reason = f"unchanged: {job.image} has build hash {prepared.build_hash}"
        log.write(reason + "\n")
        self.progress.update(job.key, "skipped", reason)
        return Attempt(Status.SKIPPED, reason, prepared, digest=found[0], compressed=compressed(
            self._registry(job.image.registry), job.image, found[0]))

    def _done(self, job: BuildJob, attempt: Attempt) -> None:
        run, mirrors = attempt.run, attempt.prepared.mirrors
        served = f" (sources from mirror {', '.join(m.name for m in mirrors)})" if mirrors else ""
        self.progress.update(job.key, "done",
                             (run.pushed.digest if run.pushed else run.image_id or "") + served,
                             engine=run.engine)
        if self.read_back and run.pushed:
            self._read_back(job.image, run.pushed.digest)

    def _build_somewhere(self, job: BuildJob, parent: JobResult | None, prepared: Prepared,
                         log) -> Attempt:
        """Build on an engine of the job's pool; once more, on another, if that one goes away."""
        self.progress.update(job.key, "queued", f"waiting for a slot in {' | '.join(job.pool)}")
        tried: set[str] = set()
        run, failovers, earlier = None, [], ()
        while True:
            try:
                engine = self._take(job, parent, tried)
            except BuilderError as error:
                return Attempt(Status.FAILED, prepared=prepared, run=run,
                               failovers=tuple(failovers), earlier=earlier, error=error)
            try:
                pulls = prepared.bases
                if parent is not None and parent.digest and parent.engine != engine.name:
                    # Built elsewhere: pulled with our credentials.
                    pulls = (parent_reference(parent.image, parent.digest), *pulls)
                run = self.work.run(engine, job, prepared, pulls, log, emulated=(
                    engine.name, job.platform.name) in self.health.emulated,
                    backend=self.health.backend(engine.name, job.platform.name))
                gone = self._gone(engine, run.error)
            finally:
                self._give_back(engine)
            if run.error is None:
                return Attempt(Status.BUILT, prepared=prepared, run=run,
                               failovers=tuple(failovers), earlier=earlier)
            if gone is None or failovers:  # not the engine's doing, or its one retry is spent
                return Attempt(Status.FAILED, prepared=prepared, run=run,
                               failovers=tuple(failovers), earlier=earlier,
                               error=gone or run.error)
            failovers.append(self._failover(job, engine, gone, log))
            # The partial build there is not used; its phases stay on the timeline.
            earlier, run = earlier + run.phases, replace(run, image_id=None, phases=())
            tried.add(engine.name)

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

    def _gone(self, engine: Engine, error: Exception | None) -> health.EngineUnreachable | None:
        """Whether `error` is `engine` going away; an engine that does not answer any more is
        lost for the rest of the run."""
        if error is None or self.cancelled.is_set():
            return None
        gone = health.unreachable(engine, error)
        if gone is not None and not gone.answers:
            with self._board:
                self._lost[engine.name] = str(gone)
                self._board.notify_all()
        return gone

    def _failover(self, job: BuildJob, engine: Engine, gone: health.EngineUnreachable,
                  log) -> Failover:
        log.write(f"\nFAILOVER: {gone}; building again from the start on another engine of "
                  f"its pool\n")
        self.progress.update(job.key, "queued", f"failover: {gone}", engine="-")
        return Failover(engine.name, str(gone), time.time())

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
                    go_on(self.cancelled, "its build started")
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
        image = None
        if parent is not None:
            # The parent's registry digest when it has one, else its local image id: then the
            # job takes a slot only on the engine that built the parent (Runner._take).
            image = parent_reference(parent.image, parent.digest) if parent.digest \
                else parent.image_id
        return prepare(job, image, pin_bases(job, self.pins.pin), self.plan.builders.mirrors)

    def _registry(self, host: str) -> RegistryClient:
        return self.registries.client(host)
