"""A flaky registry and a killed release: the one retry policy.

The policy's rules are tested on values in tests/unit/test_faults.py. Here, against the real
engine and registries, through the test bed's fault proxy (mitmproxy, seeded and
bounded): a base pull and an engine push that meet nothing but faults at first (on each engine
kind: the engine words the registry's failures, and the words are what is retried), a base pull
whose manifest request drops (the containerd store then says "not found") and one of a base
that is not there; a release of
the example family (examples/hello, 2 variants × 7 platforms) through 20% faults, against a
clean release of the same to another registry, while a poller reads every tag; and a release
killed with SIGKILL at 10 seeded moments, then run again.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from builder.farm import engineapi
from builder.plan import plan
from builder.model import retry
from builder.model import versions
from builder.model.builders import Builders, Engine
from builder.model.platforms import PLATFORMS
from builder.model.reference import ACCEPT_ALL, LIST_TYPES, ImageRef
from builder.registry.client import RegistryClient
from testbed.engine import remove_tags_of
from testbed.registry import start_registry
from tests.helpers.paths import INVOKE, ROOT

HELLO = ROOT / "examples" / "hello" / "versions.yaml"
HELLO_PLATFORMS = 7  # per variant; every tag of the family lists one variant's images

# --- the policy, pure ----------------------------------------------------------------------


# --- the real engine and registries, through the fault proxy --------------------------------

@pytest.fixture
def forget(request, docker_client):
    """Hosts (registries, proxies) whose local image tags go at the test's end, on the host's
    engine and on the engine of a test's kind."""
    hosts: list[str] = []
    yield hosts
    clients = [docker_client]
    if "build_engine" in request.fixturenames:
        clients.append(request.getfixturevalue("build_engine").client)
    for client in dict.fromkeys(clients):
        for host in hosts:
            remove_tags_of(client, host)


@pytest.fixture
def fresh_registry(tmp_path, forget):
    """Registries of this test alone: a release to one must find nothing there before."""
    started = []

    def start(name: str):
        registry = start_registry(tmp_path / name, name=f"faults-{name}")
        started.append(registry)
        forget.append(registry.host)
        return registry

    yield start
    for registry in started:
        registry.stop()


def _busybox_digest(mirror) -> str:
    ref = ImageRef.parse(f"{mirror.host}/library/busybox:latest")
    return RegistryClient(mirror.host).resolve_platform(ref, PLATFORMS["amd64"]).digest


def _pull_through(proxy, mirror, build_engine) -> tuple[str, retry.Tally, list[str]]:
    """The mirror's amd64 busybox, pinned, pulled through `proxy`: its reference, the retries
    and their lines."""
    base = f"{proxy.host}/library/busybox@{_busybox_digest(mirror)}"
    engine = Engine(build_engine.name, build_engine.url, (PLATFORMS["amd64"],))
    lines = []
    with retry.scope(lines.append) as retried:
        engineapi.pull(build_engine.client.api, engine, base, PLATFORMS["amd64"],
                       lambda line: None, registry=RegistryClient(proxy.host))
    return base, retried, lines


def test_a_base_pull_meeting_faults_is_retried_whole(mirror, fault_proxy, build_engine, forget):
    proxy = fault_proxy(mirror, rate="1", max_faults=3, seed=5)
    forget.append(proxy.host)
    base, retried, lines = _pull_through(proxy, mirror, build_engine)
    assert len(proxy.faults()) == 3
    assert retried.retries >= 1 and all(f"of the pull of {base}" in line for line in lines)
    build_engine.client.images.get(base)  # it is there now


@pytest.mark.parametrize("seed, fault", [(4, "drop before"), (1, "drop after")])
def test_a_base_pull_whose_manifest_request_drops_is_retried(seed, fault, mirror, fault_proxy,
                                                             build_engine, forget):
    """The containerd store's resolver says "not found" for a pinned base whose manifest HEAD
    got no answer (it asks for the digest's blob next, and reports that 404): the registry,
    asked by the pull itself, serves the image, so the pull runs again."""
    proxy = fault_proxy(mirror, rate="1", max_faults=1, seed=seed, kinds="drop",
                        match=r"^HEAD /v2/.*/manifests/")
    forget.append(proxy.host)
    base, retried, lines = _pull_through(proxy, mirror, build_engine)
    assert [kind for kind, _, _ in proxy.faults()] == [fault]
    assert retried.retries <= 1 and all(f"of the pull of {base}" in line for line in lines)
    build_engine.client.images.get(base)


def test_a_base_the_registry_does_not_have_fails_its_pull_at_once(mirror, build_engine):
    base = f"{mirror.host}/library/busybox@sha256:{'0' * 64}"
    engine = Engine(build_engine.name, build_engine.url, (PLATFORMS["amd64"],))
    with retry.scope(lambda line: None) as retried, \
            pytest.raises(engineapi.RegistryFailed) as failed:
        engineapi.pull(build_engine.client.api, engine, base, PLATFORMS["amd64"],
                       lambda line: None, registry=RegistryClient(mirror.host))
    assert retried.retries == 0 and failed.value.transient is None
    assert str(failed.value).startswith(f"engine {build_engine.name} cannot pull the base image "
                                        f"{base}: {mirror.host} has no such image (")


def test_an_engine_push_meeting_faults_is_retried_whole(mirror, fresh_registry, fault_proxy,
                                                        build_engine, forget):
    docker_client = build_engine.client
    target = fresh_registry("push")
    # The engine retries a layer's requests itself, not the manifest's: fail those, each before
    # the registry stores it (seed 21: a dropped connection, then two 502s). A manifest stored
    # before its answer was lost is found there by the containerd store's next attempt, which
    # then PUTs nothing, so it would not meet the other faults.
    proxy = fault_proxy(target, rate="1", max_faults=3, seed=21, match=r"^PUT /v2/.*/manifests/")
    forget.append(proxy.host)
    family = versions.load(HELLO)
    builders = Builders((Engine(build_engine.name, build_engine.url, (PLATFORMS["amd64"],)),))
    job = plan.plan(family, "1.0.0", ("busybox",), ("amd64",), builders=builders,
                    registry=proxy.host).jobs[0]
    source = f"{mirror.host}/library/busybox@{_busybox_digest(mirror)}"
    docker_client.api.pull(source)
    engineapi.tag(docker_client.api, docker_client.images.get(source).id, job.image)
    lines = []
    with retry.scope(lines.append) as retried:
        pushed = engineapi.push_image(docker_client.api, job, RegistryClient(proxy.host))
    assert len(proxy.faults()) == 3 and retried.retries == 3
    assert all(f"of the push of {job.image}" in line for line in lines)
    served = RegistryClient(target.host).head_manifest(job.image.repository, job.image.tag)
    assert served.digest == pushed.digest


@pytest.mark.parametrize("seed, fault", [(21, "drop before"), (8, "drop after")])
def test_an_upload_whose_connection_drops_sends_its_body_again_whole(
        seed, fault, fresh_registry, fault_proxy):
    """The seed makes the one fault a dropped connection on the upload's PUT: before the
    registry saw it (the same session takes the body again), or after the registry stored it
    (the session is gone: the blob is found there). The registry checks the body's digest."""
    target = fresh_registry("upload")
    proxy = fault_proxy(target, rate="1", max_faults=1, seed=seed, match=r"^PUT /v2/.*/blobs/")
    body = os.urandom(256 * 1024)
    lines = []
    with retry.scope(lines.append) as retried:
        digest = RegistryClient(proxy.host).upload_blob("faults/upload", body)
    assert [kind for kind, _, _ in proxy.faults()] == [fault]
    assert retried.retries == 1 and "connection dropped" in lines[0]
    assert target.get(f"/v2/faults/upload/blobs/{digest}").content == body


def _release(registry_host: str, tmp: Path, mirror, name: str, **popen) -> subprocess.Popen:
    report = tmp / f"{name}.json"
    return subprocess.Popen(
        [str(INVOKE), "release", "--versions", str(HELLO), "--version", "1.0.0",
         "--registry", registry_host, "--report", str(report), "--logs", str(tmp / f"logs-{name}"),
         "--out", str(tmp / f"out-{name}")],
        cwd=ROOT, env={**os.environ, "BUILDER_BASE_MIRROR": mirror.host, "PYTHONUNBUFFERED": "1"},
        text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **popen)


def _finish(process: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _holdings(registry) -> dict[str, str]:
    """Every repository:tag the registry holds → its manifest digest, read directly."""
    held = {}
    repositories = registry.get("/v2/_catalog").json()["repositories"]
    for repository in repositories:
        for tag in registry.get(f"/v2/{repository}/tags/list").json().get("tags") or []:
            answer = requests.head(f"{registry.url}/v2/{repository}/manifests/{tag}", timeout=30,
                                   headers={"Accept": ", ".join(ACCEPT_ALL)})
            answer.raise_for_status()
            held[f"{repository}:{tag}"] = answer.headers["Docker-Content-Digest"]
    return held


@pytest.fixture(scope="module")
def clean_release(tmp_path_factory, mirror, docker_client):
    """The example family released once to a registry of its own, no faults: what a release
    writes (tag → digest), its report, and how long it took."""
    tmp = tmp_path_factory.mktemp("clean")
    registry = start_registry(tmp / "registry", name="faults-clean")
    try:
        started = time.monotonic()
        code, out = _finish(_release(registry.host, tmp, mirror, "clean"))
        seconds = time.monotonic() - started
        assert code == 0, out
        report = json.loads((tmp / "clean.json").read_text())
        yield {"holdings": _holdings(registry), "report": report, "seconds": seconds}
    finally:
        registry.stop()
        remove_tags_of(docker_client, registry.host)


def _published(report: dict) -> dict[str, tuple[str, int]]:
    """tag → (digest, platform count) of a report's published lists."""
    return {t["tag"]: (t["digest"], len(t["platforms"])) for t in report["tags"]}


def test_a_release_through_20_percent_faults_goes_through_in_one_run(
        clean_release, mirror, fresh_registry, fault_proxy, tmp_path, forget):
    target = fresh_registry("target")
    proxy = fault_proxy(target, rate="0.2", max_faults=40, seed=2026)
    forget.append(proxy.host)
    tags = sorted(_published(clean_release["report"]))
    seen_partial, reads, stop = [], [0], threading.Event()

    def poll():
        """Every tag, read straight from the registry: absent, or a list of every platform."""
        session = requests.Session()
        while not stop.is_set():
            for tag in tags:
                answer = session.get(f"{target.url}/v2/hello/manifests/{tag}", timeout=30,
                                     headers={"Accept": ", ".join(ACCEPT_ALL)})
                reads[0] += 1
                if answer.status_code == 404:
                    continue
                document = answer.json()
                if document.get("mediaType") not in LIST_TYPES or \
                        len(document["manifests"]) != HELLO_PLATFORMS:
                    seen_partial.append((tag, document))
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.monotonic()
    try:
        code, out = _finish(_release(proxy.host, tmp_path, mirror, "faulty"))
    finally:
        stop.set()
        poller.join(60)
    seconds = time.monotonic() - started
    faults = proxy.faults()
    report = json.loads((tmp_path / "faulty.json").read_text())
    print(f"faulty release: {seconds:.0f}s (clean: {clean_release['seconds']:.0f}s), "
          f"{len(faults)} faults, retries {report['retries']}, {reads[0]} poller reads")
    assert code == 0, out
    assert len(faults) == 40  # the bound was reached: the run met every fault
    assert report["retries"].get(proxy.host, 0) >= 1
    assert sum(job["retries"] for job in report["jobs"]) >= 1
    assert seen_partial == []
    assert reads[0] > len(tags)
    assert _published(report) == _published(clean_release["report"])
    assert _holdings(target) == clean_release["holdings"]


def test_a_release_killed_at_10_moments_then_run_again_writes_what_a_clean_run_does(
        clean_release, mirror, fresh_registry, tmp_path):
    """Each moment is seeded: a stage (its heading in the output), then a number of lines into
    it and a fraction of a second, so that every stage is hit however fast the machine is
    (publish prints its lines only when done: a line count alone would miss it). A run that
    ends before its moment went through; the next moment is drawn again. Once the registry
    holds the images, a run finds them unchanged and takes about a second, and many moments
    fall after its end: hence up to 60 runs for the 10 kills."""
    target = fresh_registry("killed")
    rng = random.Random(13)
    killed, runs, started = [], 0, time.monotonic()
    while len(killed) < 10 and runs < 60:
        runs += 1
        stage = rng.choice(("build and push", "publish", "summary pages"))
        lines_in = rng.randint(0, 40) if stage == "build and push" else 0
        after = rng.uniform(0, 1.0 if stage == "build and push" else 0.5)
        process = _release(target.host, tmp_path, mirror, f"killed-{runs}", bufsize=1)
        countdown = None
        for line in process.stdout:
            if line.strip() == f"== {stage}":
                countdown = lines_in
            if countdown is not None:
                if countdown == 0:
                    time.sleep(after)
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                countdown -= 1
        process.communicate(timeout=900)
        if process.returncode == -signal.SIGKILL:
            killed.append(stage)
        else:
            assert process.returncode == 0
    code, out = _finish(_release(target.host, tmp_path, mirror, "after"))
    print(f"killed {len(killed)} of {runs} runs (in stages: {', '.join(killed)}), then one "
          f"more: {time.monotonic() - started:.0f}s")
    assert len(killed) == 10
    assert set(killed) == {"build and push", "publish", "summary pages"}
    assert code == 0, out
    assert _holdings(target) == clean_release["holdings"]
