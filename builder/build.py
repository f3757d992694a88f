"""Stage build: run a plan: pin bases, skip what the registry already holds, build, check, push.

Each job runs in its own thread; an engine's `concurrency` bounds how many of its jobs build
at once, so jobs on different engines overlap. A failed job fails alone: the others go on,
and nothing of the failed job is tagged in the registry (push comes after the platform check).

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

import hashlib
import io
import json
import sys
import tarfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import engineapi, engines, versions
from .builders import Engine
from .dockerfile import from_images, needs_host_network, rewrite_from, rewrite_urls
from .engineapi import Container, Output, PushedImage, Step
from .mirror.config import Mirror
from .errors import EXIT_FAILED, EXIT_OK, BuilderError, InputError
from .plan import BuildJob, Plan, SkippedJob
from .plan import plan as make_plan
from .progress import Progress, table
from .reference import DOCKER_HUB, FOREIGN_LAYER_TYPES, ImageRef, sha256_digest
from .registry import DEFAULT_CONCURRENCY, Registries, RegistryClient, RegistryError
from .report import Report, Status
from .smoke import Outcome

HASH_LABEL = "org.python-image-builder.build-hash"
BUILD_TIMEOUT = 3600  # seconds without a byte from the engine: a RUN under QEMU can be quiet long


@dataclass
class JobResult:
    key: str
    platform: str  # official name: arm32v7
    engine: str | None
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
                "log": str(self.log) if self.log else None}


@dataclass
class BuildRun:
    plan: Plan
    results: list[JobResult]
    interrupted: bool = False  # Ctrl-C: jobs that had not finished are failed "interrupted"
    planned: bool = False  # --dry-run: the plan only, nothing ran

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if r.status is Status.FAILED]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failures else EXIT_OK

    def add_to(self, report: Report) -> None:
        """The build stage's entry and every job's result."""
        if self.planned:
            report.stage("build", Status.PLANNED, jobs=len(self.plan.jobs),
                         skipped=len(self.plan.skipped))
            return
        report.jobs = [r.as_dict() for r in self.results]
        counts = Counter(r.status.value for r in self.results)
        if self.failures:
            counts.pop(Status.FAILED.value)
            report.stage("build", Status.FAILED, **counts, failed=[f.key for f in self.failures],
                         reason=f"{len(self.failures)} job(s) failed")
        else:
            report.stage("build", Status.OK, **counts)

    def table(self) -> str:
        return table([(r.key, r.engine or "-", r.status.value, r.digest or "-",
                       f"{r.seconds:.1f}s" if r.seconds is not None else "-")
                      for r in self.results])


@dataclass(frozen=True)
class Prepared:
    dockerfile: str  # FROM lines pinned, upstream URLs rewritten to their mirrors
    context: bytes  # the tar sent to the engine
    build_hash: str
    bases: tuple[str, ...]  # pinned registry references the engine pulls first: repo@sha256:…
    mirrors: tuple[Mirror, ...] = ()  # the mirrors the Dockerfile as sent fetches from


def build_hash(dockerfile: str, files: dict[str, bytes], build_args: dict[str, str],
               platform: str) -> str:
    """The content identity of a build (pinned base digests are part of `dockerfile`)."""
    document = {"dockerfile": dockerfile, "platform": platform, "build_args": build_args,
                "files": {name: hashlib.sha256(data).hexdigest()
                          for name, data in sorted(files.items())}}
    return sha256_digest(json.dumps(document, sort_keys=True).encode())


def context_files(directory: Path) -> dict[str, bytes]:
    """Files next to a Dockerfile in the tree, minus the Dockerfile (we send the rendered one)
    and minus nested variant directories (3.8/buster/slim is its own context)."""
    if not directory.is_dir():
        return {}
    nested = [p.parent for p in directory.rglob("Dockerfile") if p.parent != directory]
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != "Dockerfile"
            and not any(n in p.parents for n in nested)}


def context_tar(dockerfile: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Runner:
    """Runs one plan; thread-safe caches of pinned bases. The registry clients are the run's
    (`registries`), so every job thread shares each registry's pool and limit."""

    def __init__(self, plan: Plan, *, push: bool, force: bool, nocache: bool, logs: Path,
                 progress: Progress, registries: Registries | None = None,
                 read_back: bool = False) -> None:
        self.plan = plan
        self.push = push
        self.force = force
        self.nocache = nocache
        self.logs = logs
        self.progress = progress
        self.engines = {e.name: e for e in plan.builders.engines}
        self.slots = {e.name: threading.Semaphore(e.concurrency) for e in plan.builders.engines}
        self.results: dict[str, JobResult] = {}
        self.done = {job.key: threading.Event() for job in plan.jobs}
        self.registries = registries or Registries()
        self.read_back = read_back  # a release's later stages will read what is pushed
        self._pins: dict[tuple[str, str], str] = {}
        self._base_digests: dict[str, str] = {}  # a base's tag, read once: every platform pins one list
        self._base_lock = threading.Lock()
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self._containers: dict[str, tuple[Engine, str]] = {}  # job key → its running RUN step

    def run(self) -> BuildRun:
        """Every job; on Ctrl-C, stop: no job starts or pushes any more, running RUN steps are
        killed, and the run comes back (interrupted) once the threads have noticed."""
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
                        interrupted=self.cancelled.is_set())

    def cancel(self) -> None:
        self.cancelled.set()
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
        result = JobResult(job.key, job.platform.name, job.engine, Status.FAILED,
                           image=str(job.image), log=log_path)
        try:
            # Line-buffered, so `tail -f` on a long build shows each line as it comes.
            with log_path.open("w", buffering=1) as log:
                self._attempt(job, result, log)
        except BuilderError as error:
            reason = str(error)
            if self.cancelled.is_set() and not reason.startswith("interrupted"):
                reason = f"interrupted: {reason}"
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

    def _attempt(self, job: BuildJob, result: JobResult, log) -> None:
        parent = self._wait_parent(job)
        self._go_on(job, "it started")
        self.progress.update(job.key, "resolving", "pinning base images")
        prepared = self._prepare(job, parent)
        result.build_hash, result.mirrors = prepared.build_hash, prepared.mirrors
        via = "".join(f"\n  {m.upstream} from mirror {m.name} ({m.url})" for m in prepared.mirrors)
        log.write(f"job {job.key} on {job.engine}, build hash {prepared.build_hash}{via}\n"
                  f"--- Dockerfile as sent ---\n{prepared.dockerfile}--- build ---\n")
        if self.push and not self.force:
            found = engineapi.registered(self._registry(job.image.registry), job.image, HASH_LABEL)
            if found and found[1] == prepared.build_hash:
                result.status, result.digest = Status.SKIPPED, found[0]
                result.reason = f"unchanged: {job.image} has build hash {prepared.build_hash}"
                log.write(result.reason + "\n")
                self.progress.update(job.key, "skipped", result.reason)
                return
        self.progress.update(job.key, "queued", f"waiting for engine {job.engine}")
        engine = self.engines[job.engine]
        with self.slots[job.engine]:
            self._go_on(job, "its build started")
            result.started = time.time()
            self.progress.update(job.key, "building")
            api = engines.connect(engine, timeout=BUILD_TIMEOUT)
            try:
                result.image_id = self._build(api, engine, job, prepared, log)
                self._smoke_test(api, job, result, log)
                result.built = time.time()
                if self.push:
                    self._go_on(job, "its push; nothing of it was pushed")
                    self.progress.update(job.key, "pushing", str(job.image))
                    pushed = engineapi.push_image(api, job, self._registry(job.image.registry),
                                                  lambda line: log.write(line + "\n"))
                    result.pushed, result.digest = pushed, pushed.digest
            finally:
                with self._lock:
                    self._containers.pop(job.key, None)
                api.close()
            result.finished = time.time()
        result.status = Status.BUILT
        served = f" (sources from mirror {', '.join(m.name for m in result.mirrors)})" \
            if result.mirrors else ""
        self.progress.update(job.key, "done", (result.digest or result.image_id or "") + served)
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

    def _smoke_test(self, api, job: BuildJob, result: JobResult, log) -> None:
        """Fail the job, before anything of it is pushed, unless every smoke test passes."""
        if not job.checks:
            return
        self._go_on(job, "its smoke tests; nothing of it was pushed")
        self.progress.update(job.key, "testing", f"{len(job.checks)} smoke tests")
        result.checks = engineapi.run_checks(api, result.image_id, job.checks, job.version.full,
                                             job.platform, lambda line: log.write(line + "\n"))
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
        return parent

    def _prepare(self, job: BuildJob, parent: JobResult | None) -> Prepared:
        pins, bases = {}, []
        for image in from_images(job.dockerfile_text):
            if parent and image == job.variant.base_image:
                # The parent's registry digest when it has one, else its local image id: the
                # parent built on this same engine, since engines are chosen per platform.
                pins[image] = (f"{ImageRef.parse(parent.image).familiar_repository}@{parent.digest}"
                               if parent.digest else parent.image_id)
            else:
                pins[image] = self._pin(image, job)
                bases.append(pins[image])
        dockerfile, used = rewrite_urls(rewrite_from(job.dockerfile_text, pins),
                                        self.plan.builders.mirrors)
        files = context_files(self.plan.family.source.parent / job.dockerfile.parent)
        return Prepared(dockerfile, context_tar(dockerfile, files),
                        build_hash(dockerfile, files, job.build_args, job.platform.oci),
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

    def _build(self, api, engine: Engine, job: BuildJob, prepared: Prepared, log) -> str:
        """Pull the bases, build, check the platform, tag; returns the image id."""
        for base in prepared.bases:
            engineapi.pull(api, engine, base, job.platform, lambda line: log.write(line + "\n"))

        def on_event(event: engineapi.Event) -> None:
            if isinstance(event, Container):
                with self._lock:
                    self._containers[job.key] = (engine, event.id)
            elif isinstance(event, Step):
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


def run_plan(plan: Plan, *, push: bool = False, force: bool = False, nocache: bool = False,
             logs: str | Path = "logs", out: TextIO | None = None,
             registries: Registries | None = None, read_back: bool = False) -> BuildRun:
    """Run every job of `plan`, showing progress and then the table on `out`; failures are in
    the results, and each is also named on stderr with its log. `registries`: the run's
    registry clients, when a release shares them with its later stages; `read_back`: read
    each pushed image into their cache for those stages."""
    _check_push_target(push, plan.registry)
    progress = Progress([(j.key, j.engine) for j in plan.jobs] + [(s.key, "-") for s in plan.skipped],
                        out=out or sys.stdout)
    runner = Runner(plan, push=push, force=force, nocache=nocache, logs=Path(logs),
                    progress=progress, registries=registries, read_back=read_back)
    try:
        result = runner.run()
    finally:
        progress.close()
    print(result.table(), file=progress.out)
    for failure in result.failures:
        print(f"failed: {failure.reason} (log: {failure.log})", file=sys.stderr)
    if result.interrupted:
        raise KeyboardInterrupt
    return result


def _check_push_target(push: bool, registry: str | None) -> None:
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


def run(options: BuildOptions, out: TextIO | None = None, *,
        family: versions.Family | None = None, registries: Registries | None = None,
        read_back: bool = False) -> BuildRun:
    """`invoke build`: print the plan (dry-run: only that), run it, write the report.

    `family` is the loaded versions file and `registries` the run's registry clients when the
    caller has them already; `read_back` as for `run_plan`.
    """
    out = out or sys.stdout
    _check_push_target(options.push, options.registry)  # before any file is read: nothing was done
    family = family or versions.load(options.versions)
    builders = engines.load(options.builders, require_engine=not options.dry_run)
    the_plan = make_plan(family, options.version, tuple(options.variants),
                         tuple(options.platforms), builders=builders,
                         registry=options.registry, arch_namespace=options.arch_namespace)
    print(the_plan.describe(), file=out)
    if options.dry_run:
        return BuildRun(the_plan, [], planned=True)
    result = run_plan(the_plan, push=options.push, force=options.force, nocache=options.nocache,
                      logs=options.logs, out=out, registries=registries or Registries(
                          concurrency=options.registry_concurrency), read_back=read_back)
    if options.report:
        report = Report("build", the_plan.version.full, the_plan.family.repository,
                        the_plan.registry)
        result.add_to(report)
        report.write(options.report, result.exit_code)
    return result
