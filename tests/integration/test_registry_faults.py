"""Registries that lie or fill up, behind the test bed's fault proxy (mitmproxy, passing the Host
header through): publish never leaves a variant's tags split without naming each one, and no
document is trusted that does not match its digest, its kind or its shape.

The images are hand-made (tests/helpers/windows_images.py, as in test_publish): publish reads
only manifests and configs. The faults are scripted, not drawn: every request the proxy's
`match` selects fails in the given way, after the first `skip` of them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from builder.commands.publish import PublishResult
from builder.model.platforms import PLATFORMS
from builder.model.reference import DOCKER_MANIFEST, ImageRef, Manifest, sha256_digest
from builder.model.report import Report, Status
from builder.model.tags import tag_groups
from builder.publish.writer import publish
from builder.model import retry
from builder.registry.client import BadDocument, RegistryClient, RegistryError
from testbed.engine import remove_tags_of
from testbed.registry import start_registry
from testbed.stallserver import start_stall_server
from tests.helpers.builders import LOCAL_URL, write_builders
from tests.helpers.paths import INVOKE, ROOT
from tests.helpers.windows_images import push_image
from tests.helpers.tinypy import make_family, make_version, planned, push_release

HELLO = ROOT / "examples" / "hello" / "versions.yaml"
TAG_PUT = r"^PUT /v2/tinypy/manifests/[^s]"  # a tag's list, not an image copied in by digest


@pytest.fixture
def fresh(tmp_path):
    """A registry of this test alone, and a client straight to it (no proxy)."""
    registry = start_registry(tmp_path / "registry", name="registry-faults")
    yield registry, RegistryClient(registry.host)
    registry.stop()


def _released(client: RegistryClient, host: str, full: str, label: str):
    """The version's images pushed with `label`, and every tag published from them."""
    version = make_version(full)
    push_release(client, host, version, label=label)
    groups = tag_groups(make_family(version), version)
    return version, groups, publish(client, host, "tinypy", version, groups, hash_now=planned)


def _held(client: RegistryClient, tags) -> dict[str, str]:
    return {tag: client.head_manifest("tinypy", tag).digest for tag in tags}


def _units(groups) -> list[list[str]]:
    units: dict[tuple, list[str]] = {}
    for tag, variants in groups.items():
        units.setdefault(tuple(v.name for v in variants), []).append(tag)
    return list(units.values())


@pytest.mark.parametrize("match, skip, faults, rolled_back", [
    (r"^PUT /v2/tinypy/manifests/1$", 0, 1, True),  # the third of a unit, once: roll-back works
    (r"^PUT /v2/tinypy/manifests/1\.0(\.0)?$", 1, 100, False),  # the second, and its roll-back
    (TAG_PUT, 4, 100, None),  # every list PUT from the 5th on, units side by side
], ids=["one-507", "507-and-no-roll-back", "full-from-the-5th"])
def test_a_registry_filling_up_during_publish_never_splits_a_variant_silently(
        match, skip, faults, rolled_back, fresh, fault_proxy):
    """Re-releasing over an older release, list PUTs answered 507 (Insufficient Storage)."""
    registry, direct = fresh
    version, groups, first = _released(direct, registry.host, "1.0.0", "old")
    old = _held(direct, groups)
    push_release(direct, registry.host, version, label="new")
    proxy = fault_proxy(registry, rate="1", kinds="507", match=match, skip=skip,
                        max_faults=faults)

    results = {r.tag: r for r in publish(RegistryClient(proxy.host), proxy.host, "tinypy",
                                         version, groups, hash_now=planned)}

    assert len(proxy.faults()) == faults or faults == 100
    held = _held(direct, groups)
    failed = [r for r in results.values() if r.status is Status.FAILED]
    assert failed and all("HTTP 507 Insufficient Storage" in r.reason and "attempts" not in r.reason
                          for r in failed)
    for unit in _units(groups):
        moved = [tag for tag in unit if held[tag] != old[tag]]
        for tag in unit:  # what each says is what the registry holds
            result = results[tag]
            if result.status is Status.WRITTEN:
                assert held[tag] == result.digest
            else:
                assert result.status in (Status.FAILED, Status.KEPT) and held[tag] == old[tag]
        if moved and len(moved) < len(unit):  # split: every moved tag names the rest
            assert rolled_back is not True
            assert all(set(results[tag].split_from) == set(unit) - set(moved) for tag in moved)
        else:
            assert all(not results[tag].split_from for tag in unit)
    if rolled_back:  # every variant's tags all old or all new
        assert [results[tag].status for tag in ("1.0.0", "1.0", "1")] == \
            [Status.KEPT, Status.KEPT, Status.FAILED]
        assert "rolled back to its previous list" in results["1.0.0"].reason
    elif rolled_back is False:  # 1.0.0 moved alone, and says so
        assert results["1.0.0"].status is Status.WRITTEN
        assert results["1.0.0"].split_from == ("1.0", "1")
        assert "MOVED ALONE" in results["1.0.0"].line()
        assert results["1"].status is Status.KEPT and "not written" in results["1"].reason
    report = Report("publish", version.full, "tinypy", proxy.host)
    outcome = PublishResult(version, proxy.host, tuple(results[tag] for tag in groups))
    outcome.add_to(report)
    document = report.document(outcome.exit_code)
    assert document["exit_code"] == 1 and len(document["tags"]) == len(groups)
    assert {t["status"] for t in document["tags"]} <= {"written", "kept", "failed"}

    again = publish(direct, registry.host, "tinypy", version, groups, hash_now=planned)
    assert {r.status for r in again} <= {Status.WRITTEN, Status.UNCHANGED}
    assert _held(direct, groups) == {r.tag: r.digest for r in again}


def test_a_manifest_by_tag_whose_body_does_not_match_its_digest_is_refused(fresh, fault_proxy):
    registry, direct = fresh
    version, groups, first = _released(direct, registry.host, "1.1.0", "a")
    proxy = fault_proxy(registry, rate="1", kinds="lie", match=r"^GET /v2/tinypy/manifests/",
                        max_faults=100)
    lying = RegistryClient(proxy.host)
    served = direct.head_manifest("tinypy", "1.1.0").digest
    with pytest.raises(BadDocument) as raised:
        lying.get_manifest("tinypy", "1.1.0")
    assert f"served as {served}, but its body hashes to sha256:" in str(raised.value)
    with pytest.raises(BadDocument, match="altered"):
        lying.get_manifest("tinypy", served)

    results = publish(lying, proxy.host, "tinypy", version, groups, hash_now=planned)
    assert {r.status for r in results} == {Status.FAILED}  # nothing trusted, nothing written
    assert all("hashes to" in r.reason or "altered" in r.reason for r in results)
    assert _held(direct, groups) == {r.tag: r.digest for r in first}


def test_a_stale_head_does_not_make_a_tag_unchanged(fresh, fault_proxy):
    """The registry's 1.2.0 holds another list than this run's; a cache answers HEAD with the
    digest of this run's list. Publish reads the body by tag and writes."""
    registry, direct = fresh
    version, groups, _ = _released(direct, registry.host, "1.2.0", "old")
    push_release(direct, registry.host, version, label="new")
    wanted = {r.tag: r.digest for r in publish(direct, registry.host, "tinypy", version, groups,
                                               hash_now=planned, dry_run=True)}
    proxy = fault_proxy(registry, rate="1", kinds=f"digest={wanted['1.2.0']}",
                        match=r"^HEAD /v2/tinypy/manifests/1.2.0$", max_faults=100)

    results = {r.tag: r for r in publish(RegistryClient(proxy.host), proxy.host, "tinypy",
                                         version, groups, hash_now=planned)}

    assert results["1.2.0"].status is Status.WRITTEN
    assert _held(direct, groups) == wanted


@pytest.mark.parametrize("kind, words", [
    ("ctype=" + DOCKER_MANIFEST, f"served as {DOCKER_MANIFEST} but its body says"),
    ("html", "answered HTML where a manifest was expected (first line: <!DOCTYPE html>)"),
])
def test_a_manifest_of_another_kind_or_not_json_is_a_typed_error(kind, words, fresh, fault_proxy):
    registry, direct = fresh
    _released(direct, registry.host, "1.3.0", "a")
    proxy = fault_proxy(registry, rate="1", kinds=kind, match=r"^GET /v2/tinypy/manifests/1",
                        max_faults=100)
    client = RegistryClient(proxy.host)
    ref = ImageRef.parse(f"{proxy.host}/tinypy:1.3.0")
    with pytest.raises(BadDocument) as raised:
        client.resolve_platform(ref, make_version("1.3.0").variants[0].platforms[0])
    assert words in str(raised.value) and "tinypy:1.3.0" in str(raised.value)


def _config_a_json_list(client: RegistryClient, repository: str, tag: str,
                        manifest: Manifest) -> str:
    """`manifest` put at `tag` again, naming a config that is a JSON list; that config's digest."""
    document, blob = manifest.json, b"[]"
    document["config"] = {**document["config"], "digest": client.upload_blob(repository, blob),
                          "size": len(blob)}
    client.put_manifest(repository, tag, json.dumps(document).encode(), DOCKER_MANIFEST)
    return sha256_digest(blob)


def test_an_image_whose_config_is_a_json_list_fails_its_tags_only(fresh, tmp_path):
    registry, direct = fresh
    version = make_version("1.4.0")
    pushed = push_release(direct, registry.host, version, label="a")
    bad = _config_a_json_list(direct, "tinypy", "1.4.0-buster-amd64", pushed[("buster", "amd64")])
    groups = tag_groups(make_family(version), version)

    results = {r.tag: r for r in publish(direct, registry.host, "tinypy", version, groups,
                                         hash_now=planned)}

    for tag, variants in groups.items():
        if any(v.name == "buster" for v in variants):
            assert results[tag].status is Status.FAILED
            assert f"config tinypy@{bad}: the image config is a JSON list" in results[tag].reason
        else:
            assert results[tag].status is Status.WRITTEN
    done = subprocess.run([str(INVOKE), "summary", f"{registry.host}/tinypy:1.4.0-buster-amd64",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "the image config is a JSON list" in done.stderr and "unreadable" in done.stderr


def test_a_build_over_an_unreadable_image_builds_it_again(mirror, fresh, docker_client, tmp_path):
    """The registry's per-arch image has a config that is a JSON list: the build's skip check
    cannot read it, so the job is built and pushed over it, not failed."""
    registry, direct = fresh
    ref = ImageRef.parse(f"{registry.host}/hello:1.0.0-busybox-amd64")
    planted = push_image(direct, ref.repository, ref.tag, PLATFORMS["amd64"], label="planted")
    _config_a_json_list(direct, ref.repository, ref.tag, planted)
    report = tmp_path / "report.json"
    try:
        done = subprocess.run(
            [str(INVOKE), "build", "--versions", str(HELLO), "--version", "1.0.0", "--push",
             "--platform", "amd64", "--variant", "busybox", "--registry", registry.host,
             "--report", str(report), "--logs", str(tmp_path / "logs"),
             "--out", str(tmp_path / "out")],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "BUILDER_BASE_MIRROR": mirror.host})
    finally:
        remove_tags_of(docker_client, registry.host)
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = json.loads(report.read_text())["jobs"]
    assert job["status"] == "built"
    assert "is unreadable" in Path(job["log"]).read_text()
    assert direct.get_config(ref.repository, direct.get_manifest(ref.repository, ref.tag))


# --- bounded waits ---------------------------------------------------------------------------

@pytest.fixture
def stalling():
    started = []

    def start(mode: str):
        server = start_stall_server(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("mode", ["drip", "silent"])
def test_a_registry_read_has_an_overall_deadline_retried_as_a_timeout(mode, stalling):
    """A manifest sent a byte every 5 s (the socket never times out), or never answered: each
    attempt is cut at the deadline, and the cut is retried like a timeout."""
    server = stalling(mode)
    client = RegistryClient(server.host, deadline=3, timeout=2 if mode == "silent" else 30,
                            policy=retry.Policy(attempts=2, base_delay=0.1))
    started = time.monotonic()
    with pytest.raises(RegistryError) as raised:
        client.get_manifest("tinypy", "1.0.0")
    seconds = time.monotonic() - started
    assert "failed after 2 attempts" in str(raised.value)
    assert seconds < 12 and len(server.requests) == 2
    if mode == "drip":
        assert "no whole answer within 3s" in str(raised.value)


def test_sigterm_ends_a_run_waiting_on_a_dripping_registry(stalling, tmp_path):
    """`invoke summary` of a tag whose manifest drips: SIGTERM stops it at once (exit 130),
    every request in flight cut, none retried."""
    server = stalling("drip")
    process = subprocess.Popen([str(INVOKE), "summary", f"{server.host}/tinypy:1.0.0",
                                "--out", str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert len(server.requests) == 1, server.requests
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 10
    assert process.returncode == 130, out + err
    assert "Traceback" not in err and "SIGTERM" in err
    assert len(server.requests) == 1  # nothing was retried


# --- a registry refusing every write ---------------------------------------------------------


@pytest.mark.parametrize("status", ["507", "413"])
def test_a_registry_refusing_every_upload_stops_the_remaining_pushes(
        status, mirror, fresh, fault_proxy, docker_client, tmp_path):
    """The engine's own uploads go through the proxy (it passes the Host header on, so the
    upload Locations name it): every write answered `status`. The first push that meets it
    marks the registry; the jobs after it do not push, and one line says why."""
    registry, _ = fresh
    proxy = fault_proxy(registry, rate="1", kinds=status, match=r"^(PUT|POST|PATCH) /v2/hello/",
                        max_faults=1000)
    report = tmp_path / "report.json"
    try:
        started = time.monotonic()
        done = subprocess.run(
            [str(INVOKE), "build", "--versions", str(HELLO), "--version", "1.0.0", "--push",
             "--platform", "amd64,i386,arm64v8", "--registry", proxy.host,
             "--report", str(report), "--logs", str(tmp_path / "logs"),
             "--out", str(tmp_path / "out")],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
            env={**os.environ, "BUILDER_BASE_MIRROR": mirror.host})
        seconds = time.monotonic() - started
    finally:
        remove_tags_of(docker_client, proxy.host)
    print(f"{status} on every upload: {seconds:.0f}s, {len(proxy.faults())} refused requests")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count(f"registry {proxy.host} refuses writes:") == 1, done.stderr
    jobs = json.loads(report.read_text())["jobs"]
    assert len(jobs) == 6 and {job["status"] for job in jobs} == {"failed"}
    assert any("not pushed: registry" in (job.get("reason") or "") for job in jobs), jobs
    assert seconds < 240


# --- what a killed run leaves ----------------------------------------------------------------


def test_a_run_killed_while_it_waits_leaves_a_running_report_not_the_previous_ok(
        stalling, tmp_path):
    """SIGKILL runs no clean-up: the report a pipeline reads afterwards must not be the
    previous run's "ok". The release waits on a registry that never answers, and is killed."""
    server = stalling("silent")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"format": 1, "command": "release", "result": "ok",
                                  "exit_code": 0}))  # the previous run's
    builders = write_builders(tmp_path / "builders.yaml", server.host,
                              ("local", LOCAL_URL, ("amd64",)))
    process = subprocess.Popen(
        [str(INVOKE), "release", "--version", "1.0.0", "--versions", str(HELLO), "--registry",
         server.host, "--builders", str(builders), "--platform", "amd64", "--report",
         str(report), "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.requests, "the release never asked the registry"
    process.kill()
    process.communicate(timeout=30)
    left = json.loads(report.read_text())
    assert (left["result"], left["exit_code"], left["version"]) == ("running", None, "1.0.0")


def test_the_next_run_removes_the_temp_files_a_killed_run_left_beside_the_pages(fresh, tmp_path):
    """A page is written to a temporary file and renamed; one killed between the two leaves
    `.<name>.<pid>.<random>.tmp`. The next run writing there removes a dead process's and
    leaves a live one's (another run writing now). The leftovers are placed by hand: the
    instant between write and rename is too short to hit with a signal."""
    registry, client = fresh
    _released(client, registry.host, "1.0.0", "old")
    out = tmp_path / "out"
    first = subprocess.run([str(INVOKE), "summary", f"{registry.host}/tinypy:1.0.0", "--out",
                            str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    [page] = [p for p in out.rglob("*.md")]
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid of a process that has ended
    killed = page.parent / f".{page.name}.{dead.pid}.k1ll3d.tmp"
    writing = page.parent / f".{page.name}.{os.getpid()}.l1v3.tmp"
    killed.write_text("half a page")
    writing.write_text("a page being written")
    again = subprocess.run([str(INVOKE), "summary", f"{registry.host}/tinypy:1.0.0", "--out",
                            str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not killed.exists() and writing.exists()
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([page.name, writing.name])
