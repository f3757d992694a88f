"""What --attest and --sign-key add to a release of the example family (goal: at most 5 %).

The bed of bench/release.py with the local engine alone: a mirror registry seeded with busybox
and fresh registries to release to. examples/hello 1.0.0 (2 variants × 7 Linux platforms, the
foreign ones under QEMU, 16 tags) is released with every job built (no layer cache, no skip),
alternately (a) as before and (b) with `--attest --sign-key` (a key made here with cosign), each
to a registry of its own, straight to it (no counting proxy: nothing is counted here, and the
proxy's CPU would be the bench's, not the release's), `--repeat` times after an untimed warm-up.
It prints the wall times, their medians and (b)'s overhead (also the median of each round's
difference, which the machine's drift between rounds moves less), the machine's busy
CPU-seconds during each release (every process: the engine, the registry, QEMU, this one) and
how they split between the registry released to, this process (the release and the mirror's
counting proxy run in it) and the rest (the engine, containerd, QEMU, the mirror), each stage's
median seconds in (a) and (b), (b)'s new job phases (inventory, attest) and its sign stage: the
digests it signed.

    .venv/bin/python bench/attest_cost.py [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from build_engines import guarded  # noqa: E402
from release import PLATFORMS, VERSION, Bed  # noqa: E402

PASSWORD = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    repeat = parser.parse_args().repeat
    walls: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}  # the machine's busy CPU-seconds
    # of them, the registry released to's and this process's
    split: dict[str, dict[str, list[float]]] = {"a": {"registry": [], "tool": []},
                                                "b": {"registry": [], "tool": []}}
    signed = []
    phases: dict[str, list[float]] = {"inventory": [], "attest": []}  # (b)'s, every job's
    stages: dict[str, dict[str, list[float]]] = {"a": {}, "b": {}}  # each stage's seconds
    with tempfile.TemporaryDirectory(prefix="bench-attest-", ignore_cleanup_errors=True) as workdir:
        bed = Bed(Path(workdir), second=False)
        key = Path(workdir) / "cosign.key"

        def body():
            os.environ["COSIGN_PASSWORD"] = PASSWORD
            subprocess.run(["cosign", "generate-key-pair", "--output-key-prefix",
                            str(key.with_suffix(""))], check=True, capture_output=True)
            builders = bed.builders("local", len(PLATFORMS))
            print("warm-up (untimed) …", file=sys.stderr)
            bed.release(bed.target("warm"), builders, "warm")
            for round_ in range(repeat):
                for name, extra in (("a", {}), ("b", {"attest": True, "sign_key": str(key)})):
                    target = bed.target(f"{name}{round_}")
                    registry_pid = target.registry.server.pid
                    busy, tool = busy_seconds(), own_seconds()
                    registry = process_seconds(registry_pid)
                    result, wall = bed.release(target, builders, f"{name}{round_}", force=True,
                                               direct=True, **extra)
                    cpu[name].append(busy_seconds() - busy)
                    split[name]["registry"].append(process_seconds(registry_pid) - registry)
                    split[name]["tool"].append(own_seconds() - tool)
                    walls[name].append(wall)
                    for stage, entry in result.report.stages.items():
                        stages[name].setdefault(stage, []).append(entry.get("seconds", 0.0))
                    if name == "b":
                        signed.append(result.report.stages["sign"]["signed"])
                        for job in result.report.jobs:
                            for phase in job["phases"]:
                                if phase["phase"] in phases:
                                    phases[phase["phase"]].append(
                                        phase["finished"] - phase["started"])
                    print(f"({name}) {wall:.1f} s", file=sys.stderr)

        guarded(bed, body)

    a, b = statistics.median(walls["a"]), statistics.median(walls["b"])
    print(f"hello {VERSION}: 14 jobs on the local engine, no layer cache, {os.cpu_count()} CPUs, "
          f"{repeat} rounds")
    print(f"  (a) release                       {' '.join(f'{w:.1f}' for w in walls['a'])} s;"
          f" median {a:.1f} s")
    print(f"  (b) release --attest --sign-key   {' '.join(f'{w:.1f}' for w in walls['b'])} s;"
          f" median {b:.1f} s; signed {signed} digests")
    print("  (b)'s new phases, per job: " + ", ".join(
        f"{name} median {statistics.median(times):.2f} s (max {max(times):.2f} s)"
        for name, times in phases.items() if times))
    for name in ("a", "b"):
        print(f"  ({name})'s stages, median: " + ", ".join(
            f"{stage} {statistics.median(times):.2f} s" for stage, times in stages[name].items()))
    paired = statistics.median(y - x for x, y in zip(walls["a"], walls["b"]))
    print(f"  machine CPU-seconds busy, median: (a) {statistics.median(cpu['a']):.1f}, "
          f"(b) {statistics.median(cpu['b']):.1f}")
    for name in ("a", "b"):
        registry, tool = (statistics.median(split[name][part]) for part in ("registry", "tool"))
        print(f"    ({name}): the registry {registry:.2f}, this process {tool:.2f}, the rest "
              f"{statistics.median(cpu[name]) - registry - tool:.2f}")
    builder = {name: statistics.median(c - r for c, r in zip(cpu[name], split[name]["registry"]))
               for name in ("a", "b")}
    print(f"    without the registry's: (a) {builder['a']:.1f}, (b) {builder['b']:.1f}, "
          f"{100 * (builder['b'] - builder['a']) / builder['a']:+.1f} %")
    print(f"  overhead of (b): {b - a:+.1f} s, {100 * (b - a) / a:+.1f} % (goal: at most 5 %); "
          f"median of the rounds' differences {paired:+.1f} s, {100 * paired / a:+.1f} %")


def busy_seconds() -> float:
    """CPU-seconds the machine has been busy since boot, every core and process (/proc/stat:
    all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """The CPU-seconds a process (all its threads) and its waited-for children have used
    (/proc/PID/stat: utime, stime, cutime, cstime)."""
    # the command name (field 2) may hold spaces: the fields that follow start after its ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """This process's CPU-seconds, every thread (the release, its registry client and the
    mirror's counting proxy run here)."""
    times = os.times()
    return times.user + times.system


if __name__ == "__main__":
    main()
