"""A build fanned out over CI runners, as docs/ci/ runs it: `plan` gives the matrix, one
`build --platform P --push --report build-P.json` per runner, then one `publish` of every
runner's report. Three build processes at once stand in for three runners (each with its own
report, on the test bed's local engine); the lists they publish are then what a single release
of the same version finds: every image and every tag unchanged.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke, release
from tests.helpers.families import tiny_family
from tests.helpers.registries import client_for, credentials_env, read_report

PLATFORMS = ("amd64", "arm32v7", "i386")  # the versions file's order; arm32v7 under QEMU
OCI = {"amd64": "amd64", "i386": "386", "arm32v7": "arm"}


def _matrix(common: tuple[str, ...]) -> list[str]:
    done = invoke("plan", *common, "--format", "github-matrix", "--per", "platform")
    assert done.returncode == 0, done.stderr
    return [entry["platform"] for entry in json.loads(done.stdout)["include"]]


def _runner(common: tuple[str, ...], platform: str, tmp_path: Path, env: dict) -> Path:
    report = tmp_path / f"build-{platform}.json"
    done = invoke("build", *common, "--platform", platform, "--push", "--report", str(report),
                  "--logs", str(tmp_path / "logs" / platform), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return report


def test_three_runners_and_one_publish_give_the_tags_a_single_release_finds_unchanged(
        tmp_path, tls_registry, mirror):
    repository = "tiny-fanout"
    versions_path = tiny_family(tmp_path / "tiny", repository, generate=True)
    builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", PLATFORMS))
    env = credentials_env(tls_registry)
    selection = ("--version", "1.0.0", "--variant", "busybox",
                 *(arg for p in PLATFORMS for arg in ("--platform", p)))
    common = ("--registry", tls_registry.host, "--builders", str(builders),
              "--versions", str(versions_path), "--version", "1.0.0", "--variant", "busybox")
    platforms = _matrix((*common, "--platform", ",".join(PLATFORMS)))
    assert platforms == list(PLATFORMS)

    with ThreadPoolExecutor(len(platforms)) as runners:
        reports = list(runners.map(lambda p: _runner(common, p, tmp_path, env), platforms))
    digests = {}
    for platform, report in zip(platforms, reports):
        [job] = read_report(report)["jobs"]
        assert (job["job"], job["status"]) == (f"1.0.0/busybox/{platform}", "built"), job
        digests[OCI[platform]] = job["digest"]

    published = invoke("publish", *common, *(a for p in PLATFORMS for a in ("--platform", p)),
                       "--ca-bundle", str(tls_registry.ca_bundle),
                       *(a for r in reports for a in ("--from-report", str(r))),
                       "--report", str(tmp_path / "publish.json"), env=env)
    assert published.returncode == 0, published.stdout + published.stderr
    tags = [t["tag"] for t in read_report(tmp_path / "publish.json")["tags"]]
    assert tags and all(t["status"] == "written"
                        for t in read_report(tmp_path / "publish.json")["tags"])
    client = client_for(tls_registry)
    for tag in tags:
        listed = client.get_manifest(repository, tag).json["manifests"]
        assert {m["platform"]["architecture"]: m["digest"] for m in listed} == digests, tag
    lists = {tag: client.head_manifest(repository, tag).digest for tag in tags}

    # A single release of the same selection: nothing to build, nothing to write.
    single = release(*selection, "--builders", str(builders), "--versions", str(versions_path),
                     "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs" / "single"),
                     "--report", str(tmp_path / "release.json"), registry=tls_registry)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr
    report = read_report(tmp_path / "release.json")
    assert {j["platform"]: (j["status"], j["digest"]) for j in report["jobs"]} == {
        p: ("skipped", digests[OCI[p]]) for p in PLATFORMS}
    assert [(t["tag"], t["status"]) for t in report["tags"]] == [(t, "unchanged") for t in tags]
    assert {tag: client.head_manifest(repository, tag).digest for tag in tags} == lists

    # A report of another build of one job beside them: refused, nothing published.
    other = read_report(reports[0])
    other["jobs"][0]["digest"] = "sha256:" + "0" * 64
    (tmp_path / "rerun.json").write_text(json.dumps(other))
    refused = invoke("publish", *common, "--ca-bundle", str(tls_registry.ca_bundle),
                     "--from-report", str(reports[0]), "--from-report", str(tmp_path / "rerun.json"),
                     env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: --from-report: 1.0.0/busybox/amd64 is {digests['amd64']} in {reports[0]} and "
        f"sha256:{'0' * 64} in {tmp_path / 'rerun.json'}: two builds pushed it; give the reports "
        "of one run\n")
