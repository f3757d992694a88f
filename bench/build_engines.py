"""What a pool of 1, 2 or 3 Docker engines buys: the example family built on each.

Starts its own test-bed parts: a mirror registry seeded with busybox (the tests' mirror storage,
so a warm cache builds nothing), a throwaway registry to push to, and a second and a third
dockerd playing remote build nodes. Then it builds examples/hello 1.0.0 (2 variants × 7 Linux
platforms, tiny busybox images, the foreign ones under QEMU) through `builder.farm.runner.run` with
builders files, pushing, with force and no-cache so every job really builds:

    (1) all 14 jobs on the local engine, concurrency 1
    (2) one pool of the local and the second engine, each listing every platform,
        concurrency 1 each: the scheduler gives each ready job to the less busy one
    (3) the same pool with the third engine too
    (c) the local engine alone, concurrency 2 (two slots on one engine, for comparison)

and prints per configuration the wall-clock time, the time before the first job took a slot
(the health probes and pinning), the sum of per-job engine times (the time a job holds its
engine slot: pull, build, check, push), the jobs each engine took, and the ratios against (1).
Before timing, an untimed warm-up puts the base images on every engine and the base layers in
the registry, so no configuration pays for them. Everything started is stopped by PID, and the
local image tags and digest references made are removed, also on Ctrl-C.

    .venv/bin/python bench/build_engines.py [--repeat 1]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker.errors
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from builder.farm import runner as build  # noqa: E402
from builder.model.errors import BuilderError  # noqa: E402
from testbed import procs  # noqa: E402
from testbed.baseimages import ensure_busybox  # noqa: E402
from testbed.engine import local_client, remove_tags_of, start_second_engine  # noqa: E402
from testbed.paths import cache_dir  # noqa: E402
from testbed.registry import start_registry  # noqa: E402

VERSIONS = ROOT / "examples" / "hello" / "versions.yaml"
VERSION = "1.0.0"
VARIANTS = ("busybox", "slim-busybox")
PLATFORMS = ("amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x")
LOCAL_URL = "unix:///var/run/docker.sock"


def forget_host(client, host: str) -> None:
    """remove_tags_of, then the digest references to `host` left on images that other references
    keep (a base pulled by digest that was already here): one per registry port, else they pile up."""
    remove_tags_of(client, host)
    try:
        images = client.images.list(all=True)
    except (docker.errors.DockerException, requests.RequestException):
        return
    for image in images:
        for reference in image.attrs.get("RepoDigests") or []:
            if reference.startswith(host + "/"):
                try:
                    client.images.remove(reference)  # untags only while other references remain
                except docker.errors.APIError:
                    pass


def write_builders(path: Path, mirror_host: str, *engines: tuple[str, str, tuple[str, ...], int]) -> Path:
    lines = [f"base-mirror: {mirror_host}", "engines:"]
    for name, url, platforms, concurrency in engines:
        lines += [f"  - name: {name}", f"    url: {url}",
                  f"    platforms: [{', '.join(platforms)}]", f"    concurrency: {concurrency}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Bench:
    """The parts started here, and the one build running, so cleanup can find them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mirror = self.registry = self.second = self.third = None
        # Set when the running build ends: an Event, since a Thread.join interrupted by Ctrl-C
        # can leave is_alive() False while the thread still runs.
        self.build_done: threading.Event | None = None
        self.runs = 0

    def start(self) -> None:
        print("starting: mirror registry, push registry, second and third engines …",
              file=sys.stderr)
        self.mirror = start_mirror(self.workdir)
        self.registry = start_registry(self.workdir / "registry", name="bench-registry")
        # The builds reach it over its unix socket; its TLS listener is not needed here.
        self.second = start_second_engine(self.workdir / "engine", tls=False)
        self.third = start_second_engine(self.workdir / "engine3", tls=False, number=3)

    def pull_bases(self) -> None:
        """Every platform's busybox on the second and third engines, as the local one gets it
        in the warm-up build: a build there then pulls by digest what it has."""
        for engine in (self.second, self.third):
            for name in PLATFORMS:
                engine.client.images.pull(f"{self.mirror.host}/library/busybox", tag=name)

    def build(self, builders: Path, variants=VARIANTS) -> build.BuildRun:
        """One build.run, in a thread so Ctrl-C reaches us while it runs."""
        self.runs += 1
        self.build_done = threading.Event()
        run = in_thread(lambda: build.run(build.BuildOptions(
            VERSION, variants=variants, platforms=PLATFORMS, registry=self.registry.host,
            push=True, builders=str(builders), force=True, nocache=True,
            logs=str(self.workdir / "logs" / str(self.runs)),
            versions=str(VERSIONS)), out=io.StringIO()), "build", self.build_done)
        if run.failures:
            raise SystemExit("build failed: " + "; ".join(r.reason for r in run.failures)
                             + f" (logs under {self.workdir / 'logs'})")
        return run

    def cleanup(self) -> None:
        """Registries first (a build still running then fails fast), then wait for it, then the
        second engine and the local tags of both registry hosts."""
        for registry in (self.registry, self.mirror):
            if registry:
                registry.stop()
        if self.build_done and not self.build_done.is_set():
            print("waiting for the running build to stop …", file=sys.stderr)
            with contextlib.redirect_stderr(io.StringIO()):  # its jobs' failures, now expected
                self.build_done.wait(180)
        for engine in (self.second, self.third):
            if engine:
                engine.stop()
        # Built images first: they are children of the pulled bases.
        forget_hosts([registry.host for registry in (self.registry, self.mirror) if registry])


def measure(bench: Bench, builders: Path) -> tuple[float, float, float, dict[str, tuple[int, float]]]:
    """(wall, seconds before the first job took a slot, engine time, engine → (jobs, seconds))."""
    start, epoch = time.perf_counter(), time.time()
    run = bench.build(builders)
    wall = time.perf_counter() - start
    built = [r for r in run.results if r.status == "built"]
    assert len(built) == len(VARIANTS) * len(PLATFORMS), [(r.key, r.status) for r in run.results]
    per_engine: dict[str, tuple[int, float]] = {}
    for result in built:
        jobs, seconds = per_engine.get(result.engine, (0, 0.0))
        per_engine[result.engine] = (jobs + 1, seconds + result.seconds)
    first = min(r.started for r in built) - epoch
    return wall, first, sum(s for _, s in per_engine.values()), per_engine


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def deferred_interrupts():
    """Ctrl-C or SIGTERM while starting parts takes effect once they are started (each start is
    bounded by its own timeout): a part half started would outlive the cleanup."""
    pending = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt(f"signal {pending[0]}")


def forget_hosts(hosts) -> None:
    """Drop the local engine's tags of each registry host, in order; cleanup goes on past a
    local engine that does not answer."""
    try:
        client = local_client()
    except Exception as error:  # noqa: BLE001 - cleanup goes on
        print(f"cleanup: local engine: {error}", file=sys.stderr)
        return
    try:
        for host in hosts:
            forget_host(client, host)
    finally:
        client.close()


def start_mirror(workdir: Path):
    """The tests' base mirror (a registry on their mirror storage) with busybox in it: one
    process fills that storage at a time, the others find it filled."""
    mirror = start_registry(workdir / "mirror", storage=cache_dir() / "mirror" / "storage",
                            name="bench-mirror")
    with open(cache_dir() / "mirror.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = local_client()
        try:
            ensure_busybox(client, mirror)
        finally:
            client.close()
    return mirror


def in_thread(call, name: str, done: threading.Event):
    """`call()` on a thread of its own; its result, or its exception raised here. The main
    thread waits in short sleeps, so a Ctrl-C reaches it while the call runs; `done` is set
    when the call ends, for a cleanup that must wait for it."""
    box: dict = {}

    def target():
        try:
            box["result"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            box["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    while not done.wait(0.2):
        pass
    if "error" in box:
        raise box["error"]
    return box["result"]


def guarded(bed, body) -> None:
    """Start `bed` (a test bed with start() and cleanup()), run `body()`, and clean up whatever
    happens: a bed that cannot start exits with one line, Ctrl-C or SIGTERM with 130."""
    signal.signal(signal.SIGTERM, _interrupt)
    for key in [k for k in os.environ if k == "BUILDER_BASE_MIRROR" or
                (k.startswith("BUILDER_ENGINE_") and k.endswith("_URL"))]:
        del os.environ[key]  # the builders files say where things are
    try:
        with deferred_interrupts():
            bed.start()
        body()
    except (procs.StartError, BuilderError) as error:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bed.cleanup()
        sys.exit(f"test bed: {error}")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up …", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        bed.cleanup()
        sys.exit(130)
    except BaseException:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bed.cleanup()
        raise
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bed.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the best is shown")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    configs: dict[str, Path] = {}
    results: dict[str, list[tuple[float, float, float, dict[str, tuple[int, float]]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-engines-", ignore_cleanup_errors=True) as workdir:
        bench = Bench(Path(workdir))

        def body():
            files = Path(workdir)
            mirror = bench.mirror.host
            local = ("local", LOCAL_URL, PLATFORMS, 1)
            second = ("second", bench.second.url, PLATFORMS, 1)
            third = ("third", bench.third.url, PLATFORMS, 1)
            configs.update({
                "(1) local, concurrency 1": write_builders(files / "1.yaml", mirror, local),
                "(2) pool: local + second": write_builders(files / "2.yaml", mirror, local, second),
                "(3) pool: + third": write_builders(files / "3.yaml", mirror, local, second, third),
                "(c) local, concurrency 2": write_builders(
                    files / "c.yaml", mirror, ("local", LOCAL_URL, PLATFORMS, 2)),
            })
            # Warm-up, untimed: every base on every engine, and the base layers in the push
            # registry.
            print("warm-up (untimed) …", file=sys.stderr)
            bench.build(configs["(1) local, concurrency 1"])
            bench.pull_bases()
            for round_ in range(args.repeat):
                for name, builders in configs.items():
                    print(f"run {round_ + 1}/{args.repeat}: {name} …", file=sys.stderr)
                    results.setdefault(name, []).append(measure(bench, builders))

        guarded(bench, body)

    best = {name: min(runs, key=lambda run: run[0]) for name, runs in results.items()}
    jobs = len(VARIANTS) * len(PLATFORMS)
    print(f"hello {VERSION}: {jobs} jobs ({len(VARIANTS)} variants × {len(PLATFORMS)} platforms), "
          f"pushed, force + no-cache; {os.cpu_count()} CPUs; best of {args.repeat}")
    print(f"  {'configuration':<26} {'wall':>8} {'to 1st job':>10} {'engine time':>12}  "
          "per engine: jobs, time")
    for name, (wall, first, engine_sum, per_engine) in best.items():
        shown = ", ".join(f"{engine} {jobs} in {seconds:.1f} s"
                          for engine, (jobs, seconds) in per_engine.items())
        print(f"  {name:<26} {wall:6.1f} s {first:8.1f} s {engine_sum:10.1f} s  {shown}")
    if args.repeat > 1:
        for name, runs in results.items():
            print(f"  {name:<26} walls: {', '.join(f'{run[0]:.1f} s' for run in runs)}")
    one, two, three, doubled = (best[name][0] for name in configs)
    print(f"  ratio (1)/(2): {one / two:.2f}x, (1)/(3): {one / three:.2f}x faster with a pool of "
          f"2 and 3 engines; (1)/(c): {one / doubled:.2f}x with concurrency 2 on one engine")
    print("  to 1st job: the health probes (version/info, a container per emulated platform and "
          "engine) and the base pins")
    print("  engine time: per job, the engine slot held (pull, build, platform check, push), summed")
    print(f"  note: all engines share this machine's {os.cpu_count()} CPUs, so a pool here measures "
          "the scheduling, not what separate build nodes give")


if __name__ == "__main__":
    main()
