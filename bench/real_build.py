"""The real Python release: each CPython build's wall time per platform, and what the release
itself adds beyond the builds (pinning, pushing, publishing, pages), as a ratio to the total;
with --variants, a table per variant across the reports of real builds: build time,
compressed size, python layer size and the ratio to upstream's published image.

Reads the JSON report of a release of python:3.14 slim-trixie (scripts/demo writes
out/python-3.14.json); with --run, first runs that release itself with --no-cache into
the registry given (start one with `invoke registry`), so the builds are real, not the
engine's layer cache (about 40 minutes on 2 cores for amd64 and i386 together).

    .venv/bin/python bench/real_build.py [--report out/python-3.14.json]
    .venv/bin/python bench/real_build.py --run --registry 127.0.0.1:5000 [--platform amd64 …]
    .venv/bin/python bench/real_build.py --variants out/real/*.json

The per-variant reports are those tests/integration/test_real_variants.py writes (pytest -m
variantbuild), one release per variant. The python layer is the image's layer made by the
Dockerfile step that downloads and builds CPython (read from the image config's history in
the registry the report names); upstream's sizes are Docker Hub's compressed sizes of
python:3.14.7-<variant> for amd64.

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
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: the builder package beside it

# Upstream's published compressed sizes, MB (10^6 bytes), of python:3.14.7-<variant> (Docker
# Hub, as docker-library/repo-info's repos/python/remote/ pages record them: bookworm's from
# 3.14.7-bookworm.md at 1d9af683, slim-bookworm's from 3.14-slim-bookworm.md at 34fa04a4,
# both 3.14.7). None: not found from here; the table says unknown.
UPSTREAM_MB = {
    ("slim-trixie", "amd64"): 43.4,
    ("trixie", "amd64"): 414.7,
    ("slim-bookworm", "amd64"): 44.8,
    ("bookworm", "amd64"): 384.8,
}
# The Debian variants of 3.14 built for real at least once; the free-threaded ones after them.
REAL_VARIANTS = ("slim-trixie", "trixie", "slim-bookworm", "bookworm",
                 "slim-trixie-freethreaded", "trixie-freethreaded")
WITHIN = 0.05  # a real image's compressed size is within 5% of upstream's


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


def python_layer(image: str, digest: str) -> int | None:
    """The compressed size of the layer the CPython build step made: the image config's
    history entry (empty-layer steps left out) that downloads python.tar.xz, paired with the
    manifest's layers in order; None when the two do not line up."""
    from builder.model.reference import ImageRef
    from builder.registry.client import RegistryClient

    ref = ImageRef.parse(image)
    client = RegistryClient(ref.registry)
    manifest = client.get_manifest(ref.repository, digest)
    history = [h for h in client.get_config(ref.repository, manifest).get("history", [])
               if not h.get("empty_layer")]
    layers = manifest.json.get("layers") or []
    if len(history) != len(layers):
        return None
    return next((layer["size"] for step, layer in zip(history, layers)
                 if "python.tar.xz" in step.get("created_by", "")), None)


def variant_rows(reports: list[dict], layer_of) -> list[dict]:
    """One row per built job of the reports: variant, platform, build seconds, compressed and
    python layer sizes (bytes), upstream's size (MB or None) and the ratio to it."""
    rows = []
    for report in reports:
        for job in report["jobs"]:
            if job["status"] != "built":
                continue
            _, variant, platform = job["job"].split("/")
            upstream = UPSTREAM_MB.get((variant, platform))
            compressed = job.get("compressed")
            rows.append({
                "version": report["version"], "variant": variant, "platform": platform,
                "build_seconds": job["built"] - job["started"], "compressed": compressed,
                "python_layer": layer_of(job["image"], job["digest"]),
                "upstream_mb": upstream,
                "ratio": compressed / (upstream * 1e6) if upstream and compressed else None})
    return rows


def variant_table(rows: list[dict]) -> list[str]:
    def mb(value):
        return f"{value / 1e6:8.2f}" if value is not None else f"{'?':>8}"

    lines = [f"{'variant':26} {'platform':8} {'build':>8} {'size MB':>8} {'python MB':>9} "
             f"{'upstream':>8} {'ratio':>6}"]
    for row in rows:
        upstream = (f"{row['upstream_mb']:8.1f}" if row["upstream_mb"] is not None else
                    f"{'unknown' if (row['variant'], row['platform']) in UPSTREAM_MB else 'none':>8}")
        ratio = f"{row['ratio']:6.3f}" if row["ratio"] is not None else f"{'-':>6}"
        lines.append(f"{row['variant']:26} {row['platform']:8} {row['build_seconds'] / 60:7.1f}m "
                     f"{mb(row['compressed'])} {mb(row['python_layer']):>9} {upstream} {ratio}")
    lines.append(f"(size: compressed, as pushed; upstream: Docker Hub's python:<version>-<variant>; "
                 f"none: upstream has no such image; within {WITHIN:.0%} is the goal)")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=ROOT / "out" / "python-3.14.json")
    parser.add_argument("--run", action="store_true", help="run the release first, no cache")
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--platform", action="append", default=None)
    parser.add_argument("--variants", type=Path, nargs="+", metavar="REPORT",
                        help="the per-variant table from these reports of real builds")
    args = parser.parse_args(argv)
    if args.variants:
        reports = [json.loads(path.read_text()) for path in args.variants]
        print("\n".join(variant_table(variant_rows(reports, python_layer))))
        return 0
    if args.run:
        run_release(args.registry, args.platform or ["amd64", "i386"], args.report)
    if not args.report.is_file():
        raise SystemExit(f"bench: no report at {args.report}: run scripts/demo, or pass --run")
    print("\n".join(figures(json.loads(args.report.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
