"""How many dependent round trips, and how long, the summary page of a 10-platform tag costs.

Starts its own Distribution registry (the test bed's), pushes a 10-entry manifest list of
small hand-made images (5 layers each), and puts a proxy in front of the registry that
delays every request by --latency ms, as a registry across the internet would (the test bed's
counting proxy). Then it
fetches the tag's documents concurrently (`summary.fetch`) and one at a time (workers=1),
and prints for each: requests made, the longest chain of requests that ran one after the
other (the dependent round trips actually paid), and the wall time.

    .venv/bin/python bench/summary_fetch.py [--latency 30] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, ImageRef  # noqa: E402
from builder.registry.client import RegistryClient  # noqa: E402
from builder.summary.fetch import fetch, render  # noqa: E402
from testbed.countproxy import CountingProxy  # noqa: E402
from testbed.registry import start_registry  # noqa: E402

PLATFORMS = [{"architecture": a, "os": "linux", **({"variant": v} if v else {})}
             for a, v in (("amd64", None), ("arm", "v5"), ("arm", "v6"), ("arm", "v7"),
                          ("arm64", "v8"), ("386", None), ("mips64le", None), ("ppc64le", None),
                          ("riscv64", None), ("s390x", None))]


def push_tag(client: RegistryClient, repository: str, tag: str) -> None:
    entries = []
    for n, platform in enumerate(PLATFORMS):
        layers = [client.upload_blob(repository, f"{n}/{i}".encode() * 100) for i in range(5)]
        config = json.dumps({**platform, "config": {"Cmd": ["sh"]}, "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": f"/bin/sh -c echo {i}"}
            for i in range(5)]}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config), "digest": client.upload_blob(repository, config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 500, "digest": d} for d in layers]}).encode()
        digest = client.put_manifest(repository, f"{tag}-{n}", manifest, DOCKER_MANIFEST)
        entries.append({"mediaType": DOCKER_MANIFEST, "size": len(manifest), "digest": digest,
                        "platform": platform})
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    client.put_manifest(repository, tag, body, DOCKER_LIST)


class Recorder:
    """The registry client, recording when each request started and ended."""

    def __init__(self, client: RegistryClient):
        self._client = client
        self.calls: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if name not in ("get_manifest", "get_config", "get_blob", "head_blob", "head_url"):
            return attribute

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                with self._lock:
                    self.calls.append((start, time.perf_counter()))
        return timed

    def dependent_round_trips(self) -> int:
        """The longest run of requests each starting after the previous one ended."""
        chain, last_end = 0, float("-inf")
        for start, end in sorted(self.calls, key=lambda call: call[1]):
            if start >= last_end:
                chain, last_end = chain + 1, end
        return chain


def measure(host: str, ref: ImageRef, workers: int) -> tuple[int, int, float, str]:
    recorder = Recorder(RegistryClient(host))
    recorder.get_manifest(ref.repository, ref.reference)  # connect and ping outside the timing
    recorder.calls.clear()
    start = time.perf_counter()
    page = render(fetch(ref, recorder, workers=workers))
    return len(recorder.calls), recorder.dependent_round_trips(), time.perf_counter() - start, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=30.0, help="ms added to every request")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-summary-") as workdir:
        registry = start_registry(Path(workdir), name="bench-registry")
        try:
            push_tag(RegistryClient(registry.host), "bench/python", "latest")
            proxy = CountingProxy(registry.url, latency=args.latency / 1000).start()
            ref = ImageRef.parse(f"{proxy.host}/bench/python:latest")
            results = {}
            for mode, workers in (("concurrent", 32), ("sequential", 1)):
                runs = [measure(proxy.host, ref, workers) for _ in range(args.repeat)]
                results[mode] = min(runs, key=lambda run: run[2])
            proxy.stop()
        finally:
            registry.stop()
    assert results["concurrent"][3] == results["sequential"][3], "the two fetches disagree"
    print(f"10-platform manifest list, 5 layers each, {args.latency:.0f} ms added per request")
    for mode, (requests_made, chain, seconds, _) in results.items():
        print(f"  {mode:<10}  {requests_made:3d} requests  {chain:3d} dependent round trips"
              f"  {seconds * 1000:7.1f} ms")
    concurrent, sequential = results["concurrent"], results["sequential"]
    print(f"  ratio: {sequential[1] / concurrent[1]:.1f}x fewer dependent round trips, "
          f"{sequential[2] / concurrent[2]:.1f}x faster")


if __name__ == "__main__":
    main()
