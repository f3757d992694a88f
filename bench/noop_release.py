"""A no-op re-release of the example family: how many requests, how long, how many documents.

Releases examples/hello 1.0.0 once (untimed; the local engine builds all 14 jobs, the foreign
platforms under QEMU), then again with nothing changed, timed, through counting proxies in
front of the registry and of the base mirror (the bed of bench/release.py). The second run
must build nothing, upload nothing and PUT no manifest: the script asserts that. It prints
the requests by kind, the distinct documents they read (each manifest, by tag or digest, and
each blob once), requests per document, and the wall time, against the goals: at most 1.2
requests per document and 2 s.

    .venv/bin/python bench/noop_release.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from release import PLATFORMS, VERSION, Bed, guarded  # bench/release.py

from builder.model.report import Status

GOAL_RATIO, GOAL_SECONDS = 1.2, 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs; the best time is shown")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    runs = []

    with tempfile.TemporaryDirectory(prefix="bench-noop-", ignore_cleanup_errors=True) as workdir:
        bed = Bed(Path(workdir), second=False)

        def body():
            target = bed.target("noop")
            builders = bed.builders("local", 2)
            print("first release (untimed) …", file=sys.stderr)
            bed.release(target, builders, "first")
            for n in range(args.repeat):
                bed.counts(target)
                print(f"no-op release {n + 1}/{args.repeat} …", file=sys.stderr)
                result, wall = bed.release(target, builders, f"noop{n}")
                registry, mirror = bed.counts(target)
                jobs = {job["status"] for job in result.report.jobs}
                assert jobs == {Status.SKIPPED.value}, f"a no-op release built: {jobs}"
                for counts in (registry, mirror):
                    assert counts.count("upload", "POST") == 0 and counts.blob_uploads == 0, \
                        f"a no-op release uploaded: {counts.describe()}"
                    assert counts.count("manifest", "PUT") == 0, \
                        f"a no-op release wrote manifests: {counts.describe()}"
                runs.append((wall, registry, mirror, len(result.report.jobs),
                             len(result.report.tags)))

        guarded(bed, body)

    wall, registry, mirror, jobs, tags = min(runs, key=lambda run: run[0])
    requests = registry.total + mirror.total
    documents = registry.documents + mirror.documents
    print(f"hello {VERSION}, re-released unchanged: {jobs} jobs ({len(PLATFORMS)} platforms × 2 "
          f"variants) skipped, {tags} tags unchanged, {tags} pages; best of {args.repeat}")
    print("  0 builds, 0 blob uploads, 0 manifest PUTs (asserted)")
    print(f"  registry: {registry.describe()}; {registry.documents} documents")
    print(f"  mirror:   {mirror.describe()}; {mirror.documents} documents")
    print(f"  requests {requests}, distinct documents {documents}: "
          f"{requests / documents:.2f} requests per document (goal: at most {GOAL_RATIO})")
    print(f"  wall time {wall:.2f} s (goal: at most {GOAL_SECONDS:.0f} s); "
          f"all runs: {', '.join(f'{run[0]:.2f} s' for run in runs)}")


if __name__ == "__main__":
    main()
