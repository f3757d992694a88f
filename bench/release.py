"""`invoke release` of the example family on two engines, side by side with the docker CLI.

Starts its own test-bed parts: a mirror registry seeded with busybox (the tests' mirror
storage), two throwaway registries to release to, a counting proxy in front of each registry
(testbed/countproxy.py: every request the engines, the CLI and our client make), and a
second dockerd playing a remote build node. The family is examples/hello 1.0.0: 2 variants × 7
Linux platforms, the foreign ones under QEMU; the platforms are split over the two engines, and
every job builds (no layer cache, no skip) in both runs:

    (a) our `invoke release` (builder.commands.release.run): generate check, the 14 builds at once (each
        engine's concurrency 14), push, 16 manifest lists, 16 summary pages;
    (b) a sequential shell script with the docker CLI, as a release was scripted before: per
        job `docker build` and `docker push` on the same engine as in (a), then per tag
        `docker manifest create`, `docker manifest annotate` (each entry's platform) and
        `docker manifest push`. No summary pages: the CLI has nothing for them.

It prints both wall times and their ratio, the requests each made (registry and mirror), and
the critical path of (a): the longest chain of one job's build and push (engine slot taken →
pushed), with (a)'s wall time over it. An untimed warm-up first puts the base images on both
engines. Everything started is stopped by PID, and the local tags made are removed.

    .venv/bin/python bench/release.py
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from build_engines import forget_hosts, guarded, in_thread, start_mirror, write_builders  # noqa: E402
from builder.commands import release
from builder.model import versions  # noqa: E402
from builder.model.naming import arch_reference  # noqa: E402
from builder.model.reference import ImageRef  # noqa: E402
from builder.generate.render import dockerfile_path  # noqa: E402
from builder.registry.client import RegistryClient  # noqa: E402
from builder.model.report import Status  # noqa: E402
from builder.model.tags import tag_groups  # noqa: E402
from testbed.countproxy import Counts, CountingProxy  # noqa: E402
from testbed.engine import start_second_engine  # noqa: E402
from testbed.registry import Registry, start_registry  # noqa: E402

VERSIONS = ROOT / "examples" / "hello" / "versions.yaml"
VERSION = "1.0.0"
PLATFORMS = ("amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x")
LOCAL_HALF, SECOND_HALF = PLATFORMS[0::2], PLATFORMS[1::2]
LOCAL_URL = "unix:///var/run/docker.sock"


@dataclass
class Target:
    """A registry to release to and the counting proxy in front of it (its host is the proxy's)."""
    registry: Registry
    proxy: CountingProxy

    @property
    def host(self) -> str:
        return self.proxy.host


class Bed:
    """The parts started here, so that cleanup finds them; `second=False` for one engine."""

    def __init__(self, workdir: Path, *, second: bool = True):
        self.workdir = workdir
        self.want_second = second
        self.mirror = self.mirror_proxy = self.second = None
        self.targets: list[Target] = []
        self.running: threading.Event | None = None  # set when the running release ends
        self.span = (0.0, 0.0)  # the last release's start and end, epoch seconds

    def start(self) -> None:
        print("starting: mirror registry, counting proxies, second engine …", file=sys.stderr)
        self.mirror = start_mirror(self.workdir)
        self.mirror_proxy = CountingProxy(self.mirror.url).start()
        if self.want_second:
            self.second = start_second_engine(self.workdir / "engine", tls=False)

    def target(self, name: str) -> Target:
        """A fresh registry behind its own counting proxy."""
        registry = start_registry(self.workdir / name, name=f"bench-{name}")
        target = Target(registry, CountingProxy(registry.url).start())
        self.targets.append(target)
        return target

    def builders(self, name: str, concurrency: int) -> Path:
        engines = [("local", LOCAL_URL, LOCAL_HALF if self.second else PLATFORMS, concurrency)]
        if self.second:
            engines.append(("second", self.second.url, SECOND_HALF, concurrency))
        return write_builders(self.workdir / f"{name}.yaml", self.mirror_proxy.host, *engines)

    def engine_of(self, platform: str) -> str:
        return LOCAL_URL if not self.second or platform in LOCAL_HALF else self.second.url

    def release(self, target: Target, builders: Path, name: str, *, force: bool = False,
                direct: bool = False, **extra) -> tuple[release.ReleaseResult, float]:
        """One `invoke release` run (in a thread, so Ctrl-C reaches us) and its wall time;
        `self.span` is its (start, end) in epoch seconds, as the report's job times are.
        `direct`: to the registry itself, not through its counting proxy (which runs in this
        process, and would add its own CPU to every request). `extra`: more of its options
        (attest, sign_key)."""
        host = target.registry.host if direct else target.host
        options = release.ReleaseOptions(
            VERSION, host, builders=str(builders), versions=str(VERSIONS),
            out=str(self.workdir / "out" / name), logs=str(self.workdir / "logs" / name),
            force=force, nocache=force, **extra)
        self.running = threading.Event()
        times: dict = {}

        def timed():
            start, times["began"] = time.perf_counter(), time.time()
            try:
                return release.run(options, out=io.StringIO())
            finally:
                times["wall"], times["ended"] = time.perf_counter() - start, time.time()

        result = in_thread(timed, "release", self.running)
        self.span = (times["began"], times["ended"])
        if result.exit_code:
            raise SystemExit(f"release {name} failed (exit {result.exit_code}): "
                             f"{result.report.stages} (logs under {self.workdir / 'logs' / name})")
        return result, times["wall"]

    def counts(self, target: Target) -> tuple[Counts, Counts]:
        """What went to the registry and to the mirror since the last look."""
        return target.proxy.take(), self.mirror_proxy.take()

    def cleanup(self) -> None:
        """Proxies and registries first (a release still running then fails fast), then wait for
        it, then the second engine and the local tags of every registry host used."""
        hosts = []
        for target in self.targets:
            hosts += [target.host, target.registry.host]
            target.proxy.stop()
            target.registry.stop()
        if self.mirror_proxy:
            hosts.append(self.mirror_proxy.host)
            self.mirror_proxy.stop()
        if self.mirror:
            hosts.append(self.mirror.host)
            self.mirror.stop()
        if self.running and not self.running.is_set():
            print("waiting for the running release to stop …", file=sys.stderr)
            with contextlib.redirect_stderr(io.StringIO()):
                self.running.wait(180)
        if self.second:
            self.second.stop()
        forget_hosts(hosts)


def critical_path(result: release.ReleaseResult) -> tuple[float, str]:
    """The longest chain of one job's build and push: engine slot taken → pushed."""
    chains = [(job["finished"] - job["started"], job["job"]) for job in result.report.jobs
              if job["status"] == Status.BUILT.value]
    return max(chains)


def overhead(result: release.ReleaseResult, span: tuple[float, float]) -> tuple[float, float]:
    """Seconds before the first job took its engine slot (load, generate check, plan, pins),
    and after the last push (publish, pages)."""
    jobs = [job for job in result.report.jobs if job["status"] == Status.BUILT.value]
    return (min(job["started"] for job in jobs) - span[0],
            span[1] - max(job["finished"] for job in jobs))


def shell_baseline(bed: Bed, target: Target) -> str:
    """The docker CLI script of (b): what a release looked like before this tool."""
    family = versions.load(VERSIONS)
    version = family.version(VERSION)
    mirror = RegistryClient(bed.mirror_proxy.host)
    lines = ["set -euo pipefail"]
    for variant in version.variants:
        dockerfile = (VERSIONS.parent / dockerfile_path(version, variant)).read_text()
        for platform in variant.platforms:
            name = platform.name
            base = mirror.resolve_platform(
                ImageRef.parse(f"{bed.mirror_proxy.host}/library/busybox:latest"), platform)
            context = bed.workdir / "baseline" / variant.name / name
            context.mkdir(parents=True, exist_ok=True)
            # The same base as (a) pins, already on the engine: FROM by digest, as (a) sends it.
            (context / "Dockerfile").write_text(dockerfile.replace(
                f"FROM {variant.base_image}",
                f"FROM {bed.mirror_proxy.host}/library/busybox@{base.digest}"))
            image = str(arch_reference(target.host, family.repository, version, variant, platform))
            docker = f"docker -H {shlex.quote(bed.engine_of(name))}"
            lines += [f"{docker} build -q --no-cache --platform {platform.oci} "
                      f"--build-arg TARGETPLATFORM={platform.oci} -t {image} {context}",
                      f"{docker} push -q {image}"]
    for tag, members in tag_groups(family, version).items():
        listed = f"{target.host}/{family.repository}:{tag}"
        images = [(str(arch_reference(target.host, family.repository, version, v, p)), p)
                  for v in members for p in v.platforms]
        lines.append(f"docker manifest create --insecure {listed} "
                     + " ".join(image for image, _ in images))
        for image, p in images:
            lines.append(f"docker manifest annotate {listed} {image} --os {p.os} --arch "
                         f"{p.architecture}" + (f" --variant {p.variant}" if p.variant else ""))
        lines.append(f"docker manifest push --insecure --purge {listed}")
    return "\n".join(lines) + "\n"


def run_shell(bed: Bed, script: str) -> float:
    path = bed.workdir / "baseline.sh"
    path.write_text(script)
    # Its own manifest store; the classic builder, as (a) uses it.
    env = {**os.environ, "DOCKER_CONFIG": str(bed.workdir / "docker-config"), "DOCKER_BUILDKIT": "0"}
    start = time.perf_counter()
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"baseline failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return wall


def line(name: str, counts: tuple[Counts, Counts]) -> str:
    registry, mirror = counts
    return f"  {name:<26} registry: {registry.describe()}\n  {'':<26} mirror:   {mirror.describe()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    figures = {}

    with tempfile.TemporaryDirectory(prefix="bench-release-", ignore_cleanup_errors=True) as workdir:
        bed = Bed(Path(workdir))

        def body():
            # Every job at once: 8 of the 14 are on the local engine.
            concurrent = bed.builders("concurrent", 2 * len(PLATFORMS))
            print("warm-up (untimed): the bases onto both engines …", file=sys.stderr)
            bed.release(bed.target("warm"), concurrent, "warm")
            ours, theirs = bed.target("ours"), bed.target("cli")
            bed.counts(ours)
            print("(a) invoke release …", file=sys.stderr)
            result, wall = bed.release(ours, concurrent, "ours", force=True)
            figures["a"] = (wall, bed.counts(ours), critical_path(result), len(result.report.jobs),
                            len(result.report.tags), overhead(result, bed.span))
            print(f"(a) took {wall:.1f} s; critical path {figures['a'][2][0]:.1f} s; "
                  f"{figures['a'][1][0].describe()}", file=sys.stderr)
            print("(b) docker CLI, sequential …", file=sys.stderr)
            script = shell_baseline(bed, theirs)
            bed.counts(theirs)
            figures["b"] = (run_shell(bed, script), bed.counts(theirs),
                            sum(1 for text in script.splitlines() if text.startswith("docker")))

        guarded(bed, body)

    wall_a, counts_a, (chain, chain_job), jobs, tags, (before, after) = figures["a"]
    wall_b, counts_b, commands = figures["b"]
    print(f"hello {VERSION}: {jobs} jobs (2 variants × {len(PLATFORMS)} platforms), {tags} tags; "
          f"engines: local [{' '.join(LOCAL_HALF)}], second [{' '.join(SECOND_HALF)}]; "
          f"no layer cache; {os.cpu_count()} CPUs")
    print(f"  (a) invoke release           {wall_a:7.1f} s   (build, push, {tags} lists, {tags} pages)")
    print(f"  (b) docker CLI, sequential   {wall_b:7.1f} s   ({commands} docker commands; no pages)")
    print(f"  ratio (b)/(a): {wall_b / wall_a:.2f}x faster (goal: at least 2x)")
    print(f"  critical path of (a): {chain:.1f} s ({chain_job}: engine slot taken → pushed); "
          f"wall / critical path: {wall_a / chain:.2f} (goal: at most 1.1); before the first "
          f"job's slot {before:.1f} s, after the last push {after:.1f} s")
    print("requests, through the counting proxies:")
    print(line("(a) invoke release", counts_a))
    print(line("(b) docker CLI", counts_b))


if __name__ == "__main__":
    main()
