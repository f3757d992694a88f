"""What the end of a build run shows: failures grouped by cause, the table's words and width,
and the hosts checked before any job (pure: results made by hand, plans without an engine)."""
from __future__ import annotations

from pathlib import Path

from builder.farm import preflight
from builder.model.builders import Builders, Engine
from builder.farm.results import CLOCK, BuildRun, JobResult, compact_keys, grouped
from builder.model import versions
from builder.model.platforms import PLATFORMS
from builder.model.report import Status
from builder.plan.plan import plan
from builder.registry.pins import BasePins
from builder.registry.client import Registries
from tests.helpers.paths import ROOT, TINY_FAMILY

HINT = ("cannot pin base image python:3.8-slim for linux/amd64: registry docker.io: cannot "
        "resolve the host name registry-1.docker.io; set base-mirror in the builders file")


def failed(key: str, reason: str = HINT) -> JobResult:
    return JobResult(key, key.rsplit("/", 1)[1], None, Status.FAILED, f"{key}: {reason}",
                     log=Path("logs") / f"{key}.log")


def test_jobs_failing_alike_are_one_line_with_their_count_and_keys():
    results = [failed(f"3.8.0/{variant}/{arch}") for variant in ("slim", "bookworm")
               for arch in ("amd64", "arm64v8", "i386")] + [failed("3.8.0/slim/s390x", "boom")]
    lines = grouped(results, "failed", logs=True)
    assert lines == [
        f"failed: 6 jobs (3.8.0/slim/{{amd64,arm64v8,i386}}, 3.8.0/bookworm/{{amd64,arm64v8,"
        f"i386}}): {HINT} (logs under logs/3.8.0)",
        "failed: 3.8.0/slim/s390x: boom (log: logs/3.8.0/slim/s390x.log)"]


def test_a_job_alone_is_said_as_before():
    unserved = JobResult("1.0.0/busybox/amd64", "amd64", None, Status.SKIPPED,
                         "no healthy engine for amd64: engine dead is unreachable", unserved=True)
    assert grouped([unserved], "skipped", logs=False) == [
        "skipped: 1.0.0/busybox/amd64: no healthy engine for amd64: engine dead is unreachable"]
    assert compact_keys(["1/a/amd64", "1/b/amd64", "1/a/i386"]) == "1/a/{amd64,i386}, 1/b/amd64"


def _worst_keys() -> list[str]:
    """The longest job keys of the real family: every version × variant × platform."""
    family = versions.load(ROOT / "versions.yaml")
    keys = [f"{v.full}/{variant.name}/{p.name}" for v in family.versions for variant in v.variants
            for p in variant.platforms]
    return sorted(keys, key=len)[-4:]


def test_the_table_fits_100_columns_and_says_unchanged_no_engine_or_failed():
    digest = "sha256:" + "ab" * 32
    longest, second, third, fourth = _worst_keys()
    results = [
        JobResult(longest, "windows-amd64", "windows-2022", Status.BUILT, digest=digest,
                  started=0.0, finished=3599.9),
        JobResult(second, "amd64", None, Status.SKIPPED, "unchanged: … has build hash …",
                  digest=digest),
        JobResult(third, "arm64v8", None, Status.SKIPPED, "no engine serves arm64v8"),
        failed(fourth)]
    lines = BuildRun(None, results).table().splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    assert [line.split()[2] for line in lines[1:3]] == ["built", "unchanged"]
    assert "  no engine  " in lines[3] and lines[4].split()[2] == "failed"
    assert f"  {'ab' * 6}  " in lines[1] and digest not in lines[1]
    assert lines[-1] == CLOCK


def test_the_hosts_checked_first_are_the_target_and_where_the_bases_come_from():
    family = versions.load(TINY_FAMILY)
    local = Engine("local", "unix:///var/run/docker.sock", (PLATFORMS["amd64"],))
    made = plan(family, "1.0.0", ("busybox",), ("amd64",), builders=Builders((local,)),
                registry="127.0.0.1:5999")
    pins = BasePins(Registries(), None)
    assert [(e.role, e.host) for e in preflight.endpoints(made, True, pins.host)] == [
        ("registry", "127.0.0.1:5999"), ("registry", "docker.io")]
    assert [(e.role, e.host) for e in preflight.endpoints(made, False, pins.host)] == [
        ("registry", "docker.io")]
    mirrored = BasePins(Registries(), "127.0.0.1:5000")
    made = plan(family, "1.0.0", ("busybox",), ("amd64",), builders=Builders((local,), "127.0.0.1:5000"),
                registry="127.0.0.1:5999")
    [target, mirror] = preflight.endpoints(made, True, mirrored.host)
    assert (mirror.role, mirror.host) == ("base mirror", "127.0.0.1:5000")
    assert str(preflight.unreachable({target: "connection refused"})) == (
        "registry 127.0.0.1:5999 (--registry) does not answer: connection refused; check that "
        "it is up and that --registry names it; nothing was built")
