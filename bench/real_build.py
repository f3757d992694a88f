"""The real Python release: each CPython build's wall time per platform, and what the release
itself adds beyond the builds (pinning, pushing, publishing, pages), as a ratio to the total.

Reads the JSON report of a release of python:3.14 slim-trixie (scripts/demo writes
out/python-3.14.json); with --run, first runs that release itself with --no-cache into
the registry given (start one with `invoke registry`), so the builds are real, not the
engine's layer cache (about 40 minutes on 2 cores for amd64 and i386 together).

    .venv/bin/python bench/real_build.py [--report out/python-3.14.json]
    .venv/bin/python bench/real_build.py --run --registry 127.0.0.1:5000 [--platform amd64 …]

Figures, per job: the build (FROM pull, the Dockerfile's steps, the platform check and the
smoke tests: started → built) and the push (built → finished). For the release: its wall
time (report started → finished), the critical path (the longest job, start to finish, since
jobs run in parallel), and the overhead: wall time minus the longest build, i.e. the time the
release spends on everything but compiling CPython, as a share of the total.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_release(registry: str, platforms: list[str], report: Path) -> None:
    argv = [str(ROOT / ".venv" / "bin" / "invoke"), "release", "--version", "3.14",
            "--variant", "slim-trixie", "--registry", registry, "--builders",
            str(ROOT / "builders" / "local.yaml"), "--report", str(report), "--no-cache", "--force"]
    for name in platforms:
        argv += ["--platform", name]
    subprocess.run(argv, cwd=ROOT, check=True, env={**os.environ, "BUILDER_BASE_MIRROR": registry})


def figures(report: dict) -> list[str]:
    jobs = [j for j in report["jobs"] if j["status"] == "built"]
    if not jobs:
        raise SystemExit("bench: the report has no built job (a second run skips them all: "
                         "use --run, which forces a build without the layer cache)")
    lines = [f"release of {report['repository']}:{report['version']} "
             f"(exit code {report['exit_code']})", ""]
    lines.append(f"{'job':34} {'build':>9} {'push':>8} {'checks':>7}")
    for job in jobs:
        build = job["built"] - job["started"]
        push = job["finished"] - job["built"]
        checks = sum(c["seconds"] for c in job["checks"])
        lines.append(f"{job['job']:34} {build / 60:8.1f}m {push:7.1f}s {checks:6.1f}s")
    wall = report["finished"] - report["started"]
    critical = max(j["finished"] - j["started"] for j in jobs)
    longest_build = max(j["built"] - j["started"] for j in jobs)
    overhead = wall - longest_build
    lines += ["",
              f"release wall time      {wall / 60:8.1f} min",
              f"critical path          {critical / 60:8.1f} min (the longest job, build and push)",
              f"longest build          {longest_build / 60:8.1f} min",
              f"overhead beyond builds {overhead:8.1f} s = {overhead / wall:.1%} of the total "
              f"(generate check, pinning, pushes after the last build, publish, pages)"]
    for name, stage in report["stages"].items():
        if "seconds" in stage:
            lines.append(f"  stage {name:16} {stage['seconds']:8.1f} s")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=ROOT / "out" / "python-3.14.json")
    parser.add_argument("--run", action="store_true", help="run the release first, no cache")
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--platform", action="append", default=None)
    args = parser.parse_args(argv)
    if args.run:
        run_release(args.registry, args.platform or ["amd64", "i386"], args.report)
    if not args.report.is_file():
        raise SystemExit(f"bench: no report at {args.report}: run scripts/demo, or pass --run")
    print("\n".join(figures(json.loads(args.report.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
