"""Engine pools, pure: which engine a job goes to, what an engine is judged to run (Windows facts
included: no Windows engine can run here, so they stand in for a Windows engine's `docker
version`), health's reasons, push concurrency in the builders file and the plan."""
from __future__ import annotations

import docker.errors
import pytest
import requests

from builder.model import builders as builders_file
from builder.farm import health
from builder.model import versions
from builder.model.errors import BuilderError
from builder.model.builders import Engine
from builder.farm.engineapi import StepFailed
from builder.plan.plan import plan
from builder.model.platforms import platform
from builder.farm.pools import Facts, Health, Load, choose, judge

AMD64, ARM64, WINDOWS = platform("amd64"), platform("arm64v8"), platform("windows-amd64")


WIN1809 = WINDOWS.with_os_version("10.0.17763")


def test_a_job_goes_to_the_free_engine_with_the_least_work():
    loads = [Load("a", 1, 1, 1), Load("b", 1, 2, 3), Load("c", 0, 2, 5)]
    assert choose(loads) == "c"  # a is full; c is idle although it has taken more jobs
    assert choose([Load("a", 1, 1, 1), Load("b", 1, 1, 0)]) is None  # all full: wait


def test_on_equal_load_the_engine_that_took_fewer_jobs_then_the_first_listed():
    assert choose([Load("a", 0, 1, 2), Load("b", 0, 1, 1)]) == "b"
    assert choose([Load("a", 0, 1, 1), Load("b", 0, 1, 1)]) == "a"


def test_a_job_prefers_its_parents_engine_while_it_has_a_free_slot():
    assert choose([Load("a", 0, 1, 0), Load("b", 1, 2, 4)], prefer="b") == "b"
    assert choose([Load("a", 0, 1, 0), Load("b", 2, 2, 4)], prefer="b") == "a"


def test_an_engine_is_judged_by_what_it_runs():
    engine = Engine("x", "unix:///x.sock", (AMD64, ARM64, WIN1809), os_version="10.0.17763")
    refused, foreign = judge(engine, Facts("linux", "amd64"))
    assert refused == {"windows-amd64": "listed for windows-amd64 (10.0.17763), but it runs "
                                        "linux containers (linux/amd64)"}
    assert foreign == (ARM64,)  # to be proved by a container


def test_a_windows_engine_runs_only_its_own_os_version_line():
    # Stand-in facts: a Windows engine's answers, as no Windows engine can run here.
    engine = Engine("win", "ssh://win", (WIN1809,), os_version="10.0.17763")
    assert judge(engine, Facts("windows", "amd64", "10.0.17763")) == ({}, ())
    refused, _ = judge(engine, Facts("windows", "amd64", "10.0.20348"))
    assert refused == {"windows-amd64": "listed for windows-amd64 (10.0.17763), but it runs "
                                        "Windows 10.0.20348"}


def test_what_an_engine_runs_comes_from_its_version_and_info_answers():
    assert Facts.from_answers({"Os": "linux", "Arch": "arm64"}, {}) == Facts("linux", "arm64")
    assert Facts.from_answers({}, {"OSType": "linux", "Architecture": "x86_64"}) == \
        Facts("linux", "amd64")
    # Stand-in answers of a Windows Server 2019 engine (none can run here).
    kernel = {"OSType": "windows", "KernelVersion": "10.0 17763 (17763.1.amd64fre.rs5_release.180914-1434)"}
    assert Facts.from_answers({"Os": "windows", "Arch": "amd64"}, kernel) == \
        Facts("windows", "amd64", "10.0.17763")
    assert Facts.from_answers({"Os": "windows", "Arch": "amd64"},
                              {"OSVersion": "10.0.20348.2340"}).os_version == "10.0.20348"


def test_health_says_why_a_platform_has_no_engine():
    pool = (Engine("a", "unix:///a", (AMD64,)), Engine("b", "unix:///b", (AMD64,)))
    found = Health({"a": "engine a (unix:///a) is unreachable: refused"},
                   {("b", "amd64"): "it runs linux/arm64"})
    assert not found.usable("a", "amd64") and not found.usable("b", "amd64")
    assert found.usable("b", "i386")
    assert found.no_engine_reason(AMD64, pool) == (
        "no healthy engine for amd64: engine a (unix:///a) is unreachable: refused; "
        "engine b: it runs linux/arm64")
    assert found.lines() == ["left out: engine a (unix:///a) is unreachable: refused",
                             "engine b not used for amd64: it runs linux/arm64"]


def test_a_failed_step_is_never_the_engines_going_away():
    nowhere = Engine("gone", "unix:///nonexistent/docker.sock", (AMD64,))
    failed = StepFailed("step 3/4 failed with exit code 3", step="step 3/4", exit_code=3)
    assert health.unreachable(nowhere, failed) is None
    try:
        try:
            raise requests.ConnectionError("Connection reset by peer")
        except requests.ConnectionError:
            raise BuilderError("engine gone failed during the build") from None
    except BuilderError as error:
        gone = health.unreachable(nowhere, error)
    assert gone is not None and not gone.answers and "Connection reset by peer" in str(gone)


def test_the_builders_file_caps_pushes_and_the_plan_shows_each_pool(tmp_path, tiny_family_path):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n"
                    "  - {name: a, url: 'unix:///a.sock', platforms: [amd64], concurrency: 3,"
                    " push-concurrency: 1}\n"
                    "  - {name: b, url: 'unix:///b.sock', platforms: [amd64, arm64v8]}\n")
    loaded = builders_file.parse(path)
    assert [(e.concurrency, e.pushes) for e in loaded.engines] == [(3, 1), (1, 1)]

    the_plan = plan(versions.load(tiny_family_path), "1.0.0", ("busybox",), ("amd64", "arm64v8"),
                    builders=loaded)

    assert [j.pool for j in the_plan.jobs] == [("a", "b"), ("b",)]
    text = the_plan.describe()
    assert "  pool amd64: a (3 at once, 1 push at once), b (1 at once)" in text
    assert "  pool arm64v8: b (1 at once)" in text


def test_push_concurrency_must_be_positive(tmp_path):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n  - {name: a, url: 'unix:///a.sock', platforms: [amd64],"
                    " push-concurrency: 0}\n")
    with pytest.raises(builders_file.InputError) as caught:
        builders_file.parse(path)
    assert f"{path}:2: engines[0].push-concurrency: " in str(caught.value)
