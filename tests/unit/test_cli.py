"""The command line as a user meets it: every task's help, misspelt and missing flags, the
platform spellings, --quiet and --json, the option table against the commands' Options.

Each command runs as `python -m builder` in a directory of its own, outside the checkout and
without a tasks.py, as the installed `python-image-builder` runs; none reaches an engine or a
registry (build only plans, with --dry-run).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder import cli, options
from builder.model.errors import InputError
from builder.model.platforms import platform, platform_names
from builder.registry import client
from tests.helpers.cli import python_image_builder
from tests.helpers.paths import ROOT, TINY

TASKS = sorted(cli.ns.task_names)
TABLES = {"generate": options.GENERATE, "library": options.LIBRARY, "plan": options.PLAN,
          "build": options.BUILD,
          "publish": options.PUBLISH, "release": options.RELEASE, "summary": options.SUMMARY,
          "registry": options.REGISTRY_COMMAND, "mirror": options.MIRROR, "update": options.UPDATE,
          "report": options.REPORT_COMMAND}


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return python_image_builder(*args, cwd=cwd)


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A copy of the tiny family with its tree generated, and no tasks.py about."""
    shutil.copytree(TINY, tmp_path / "tiny")
    assert run(tmp_path / "tiny", "generate").returncode == 0
    return tmp_path / "tiny"


def test_the_table_covers_every_task():
    assert TASKS == sorted(TABLES)


@pytest.mark.parametrize("task", sorted(TABLES))
def test_every_task_prints_its_help_and_exits_0(tmp_path, task):
    """`TASK --help` is the task's help, also after other flags and where a positional
    argument is due (summary's image)."""
    done = run(tmp_path, task, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: python-image-builder [--core-opts] {task} ")
    for option in TABLES[task] + options.COMMON:
        assert option.flag in done.stdout
    assert run(tmp_path, task, "--json", "-h").stdout == done.stdout


def test_help_and_the_list_load_no_engine_or_registry_client():
    probe = ("import sys, builder.cli; "
             "assert not {'docker', 'requests', 'jinja2'} & set(sys.modules), sys.modules")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, says", [
    (["build", "--verison", "3.8.0"],
     "build: unknown flag --verison; did you mean --version?"),
    (["summary", "python:latest", "--ca-bndle", "ca.pem"],
     "summary: unknown flag --ca-bndle; did you mean --ca-bundle?"),
    (["release", "--version", "3.8", "--registry", "r", "--dry"],
     "release: unknown flag --dry; did you mean --dry-run?"),
    (["generate", "-c"], "generate: unknown flag -c (`python-image-builder generate --help`"),
    (["--verison"], "unknown flag --verison; did you mean --version?"),
    (["biuld", "--version", "3.8"], "unknown command biuld; did you mean build?"),
    (["build", "--push", "registry.example.com"], "build: 'registry.example.com' is no command"),
    (["registry", "--port", "fifty"], "registry: --port takes a whole number, not 'fifty'"),
    (["mirror", "--port=86o0", "--stop"], "mirror: --port takes a whole number, not '86o0'"),
    (["build", "--dry-run"], "build: --version required; see `python-image-builder build --help`"),
    (["publish", "--version", "3.8"], "publish: --registry required"),
    (["summary"], "summary: IMAGE-REF required"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_usage_errors_exit_2_in_one_line_naming_what_to_fix(tmp_path, args, says):
    done = run(tmp_path, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
    assert done.stdout == ""


def test_no_short_flag_means_two_things():
    """Short flags are the program's own (-h, -V, -l, …): no task adds one, so `-c` cannot be
    --check in one task and --commit or --ca-bundle in another."""
    meanings: dict[str, set[str]] = {}
    for context in cli.ns.to_contexts():
        for argument in context.args.values():
            for name in argument.names:
                if len(name) == 1:
                    meanings.setdefault(name, set()).add(argument.names[0])
    assert meanings == {}


@pytest.mark.parametrize("task", sorted(TABLES))
def test_the_table_defaults_are_the_commands_defaults(task):
    """What a task's help says it defaults to is what its command gets when the flag is left
    out, and every option fills a field of the command's Options."""
    options_class, _ = cli.ns[task].load()
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    for option in TABLES[task]:
        field = fields[option.field or option.name]
        if option.required:
            continue
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        assert option.value(None) in (None, default), option.name


def test_the_concurrency_the_help_shows_is_the_registry_clients_own():
    """Spelled in the table too, so that the help loads no client: held equal here."""
    assert options.DEFAULT_CONCURRENCY == client.DEFAULT_CONCURRENCY


@pytest.mark.parametrize("name, official", [
    ("arm64v8", "arm64v8"), ("linux/arm64", "arm64v8"), ("linux/arm64/v8", "arm64v8"),
    ("arm64", "arm64v8"), ("aarch64", "arm64v8"),
    ("arm32v7", "arm32v7"), ("linux/arm/v7", "arm32v7"), ("linux/arm", "arm32v7"), ("arm", "arm32v7"),
    ("linux/arm/v6", "arm32v6"), ("amd64", "amd64"), ("linux/amd64", "amd64"), ("x86_64", "amd64"),
    ("i386", "i386"), ("linux/386", "i386"), ("386", "i386"), ("s390x", "s390x"),
    ("windows/amd64", "windows-amd64"),
])
def test_a_platform_is_its_official_name_its_oci_form_or_a_bare_architecture(name, official):
    assert platform(name).name == official


@pytest.mark.parametrize("name", ["armel", "arm65", "linux/arm/v9", "windows", ""])
def test_other_platform_names_are_refused_listing_the_forms(name):
    with pytest.raises(InputError) as refused:
        platform(name)
    assert "known: amd64, arm32v5" in str(refused.value)
    assert "an OCI platform, linux/arm64, or a bare architecture, arm64" in str(refused.value)


def test_platform_lists_are_comma_separated_and_each_platform_is_named_once():
    assert platform_names(["amd64,arm64", "linux/arm64", " linux/arm/v7 ,"]) == \
        ("amd64", "arm64v8", "arm32v7")
    with pytest.raises(InputError, match="unknown platform 'sparc'"):
        platform_names(["amd64,sparc"])


def test_the_plan_takes_any_platform_spelling(tiny):
    done = run(tiny, "build", "--version", "1.0.0", "--variant", "busybox", "--dry-run",
               "--platform", "arm64,linux/amd64", "--platform", "arm32v7")
    assert done.returncode == 0, done.stderr
    assert "plan for tiny 1.0.0: 3 jobs" in done.stdout
    for name in ("amd64", "arm64v8", "arm32v7"):
        assert f"1.0.0/busybox/{name}" in done.stdout


def test_quiet_prints_the_verdict_only(tiny):
    done = run(tiny, "generate", "--check", "--quiet")
    assert (done.returncode, done.stdout, done.stderr) == (0, "generate: ok (dockerfiles 6)\n", "")
    (tiny / "1.0" / "busybox" / "Dockerfile").write_text("FROM scratch\n")
    stale = run(tiny, "generate", "--check", "--quiet")
    assert stale.returncode == 1 and stale.stderr == ""
    assert stale.stdout == ("generate: failed (exit 1): committed Dockerfiles differ from the "
                            "templates; run `invoke generate`\n")


def test_json_puts_the_report_on_stdout_and_the_rest_on_stderr(tiny):
    done = run(tiny, "build", "--version", "1.0", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["command"], report["exit_code"], report["stages"]["build"]["status"]) == \
        ("build", 0, "planned")
    assert "plan for tiny 1.0.0" in done.stderr
    library = run(tiny, "library", "--versions", str(ROOT / "versions.yaml"), "--commit", "0" * 40,
                  "--json")
    assert json.loads(library.stdout)["stages"]["library"]["status"] == "ok"
    assert "Tags: 3.14.7-trixie" in library.stderr


def test_json_reports_an_error_too(tiny):
    done = run(tiny, "build", "--version", "7.7", "--dry-run", "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["exit_code"] == 2 and "unknown version '7.7'" in report["error"]
    assert done.stderr.startswith("error: version: unknown version '7.7'")


def test_the_verdict_of_a_release_names_each_stage():
    document = {"exit_code": 0, "stages": {
        "generate": {"status": "ok", "dockerfiles": 6, "seconds": 0.1},
        "build": {"status": "ok", "built": 2, "skipped": 12},
        "publish": {"status": "ok", "written": 4, "unchanged": 12}}}
    assert cli.verdict("release", document) == (
        "release: ok; generate ok (dockerfiles 6); build ok (built 2, skipped 12); "
        "publish ok (written 4, unchanged 12)")
    document = {"exit_code": 1, "stages": {"build": {"status": "failed", "built": 1,
                                                     "reason": "1 job(s) failed"}}}
    assert cli.verdict("build", document) == "build: failed (exit 1): 1 job(s) failed"


def test_a_build_ends_with_its_verdict_and_a_failed_one_names_the_first_failure(tiny):
    done = run(tiny, "build", "--version", "1.0.0", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("build: ok in ")
    released = run(tiny, "release", "--version", "1.0.0", "--registry", "127.0.0.1:9",
                   "--dry-run")
    assert released.returncode == 0, released.stderr
    assert released.stdout.splitlines()[-1].startswith("release: ok in ")
    document = {"exit_code": 1, "started": 100.0, "finished": 142.4,
                "stages": {"build": {"status": "failed", "built": 1, "failed": ["1/a/amd64"],
                                     "reason": "1 job(s) failed"}},
                "jobs": [{"status": "built", "reason": ""},
                         {"status": "failed", "reason": "1/a/amd64: step 2/3 failed"}]}
    assert cli.verdict("build", document) == (
        "build: failed (exit 1) in 42 s: 1 job(s) failed; first: 1/a/amd64: step 2/3 failed")
    assert cli.verdict("generate", {**document, "stages": {}}) == "generate: failed (exit 1)"
