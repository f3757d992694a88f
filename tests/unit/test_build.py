"""The build command's input checks and the engine trace parsing, without an engine."""
from __future__ import annotations

import pytest

from builder.farm import runner as build
from builder.model import versions
from builder.farm.engineapi import pushed_digest, traced_command
from builder.plan.plan import plan
from builder.model.platforms import platform
from tests.helpers.cli import invoke


def test_an_unknown_platform_is_bad_input(tiny_family_path):
    done = invoke("build", "--version", "1.0.0", "--platform", "linux/sparc",
                  "--versions", str(tiny_family_path))

    assert done.returncode == 2
    assert done.stderr.startswith("error: platform: unknown platform 'linux/sparc'; known: amd64")
    assert "plan for" not in done.stdout


@pytest.mark.parametrize("line, expected", [
    ("+ echo 0000 *python.tar.xz", "echo 0000 *python.tar.xz"),
    # A pipeline's two traces on one line: both markers first, then one command's text.
    ("+ + echo 0000 *python.tar.xz", "echo 0000 *python.tar.xz"),
    ("+ + + sha256sum -c -", "sha256sum -c -"),
    ("++ dpkg --print-architecture", None),  # a command substitution's inner trace
    ("+ ", None),
    ("Get:1 http://deb.debian.org trixie InRelease", None),
])
def test_a_trace_line_names_its_command_with_every_marker_taken_off(line, expected):
    assert traced_command(line) == expected


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("chunk, expected", [
    ({"aux": {"Tag": "1.0-amd64", "Digest": DIGEST, "Size": 528}}, (DIGEST, 528)),  # graphdriver
    ({"status": f"1.0-amd64: digest: {DIGEST} size: 528"}, (DIGEST, 528)),  # containerd store
    ({"status": f"1.0-arm64v8: digest: {DIGEST} size: 528"}, None),  # another tag's line
    ({"status": "Pushed", "id": "5f70bf18a086"}, None),
    ({"status": f"1.0-amd64: digest: sha256:short size: 528"}, None),
])
def test_a_pushed_digest_is_read_from_aux_or_from_the_final_status_line(chunk, expected):
    assert pushed_digest(chunk, "1.0-amd64") == expected


def test_each_jobs_result_goes_to_the_finished_hook_as_the_job_ends(tiny_family_path, tmp_path):
    """No engine answers (none is probed): each job ends skipped, and the hook hears of each."""
    import io

    from builder.farm.progress import Progress
    from builder.model.builders import Builders, Engine
    from builder.model.platforms import PLATFORMS

    builders = Builders((Engine("nowhere", "unix:///nonexistent.sock",
                                (PLATFORMS["amd64"], PLATFORMS["i386"])),))
    the_plan = plan(versions.load(tiny_family_path), "1.0.0", ("busybox",), ("amd64", "i386"),
                    builders=builders)
    heard = []
    runner = build.Runner(the_plan, push=False, force=False, nocache=False, logs=tmp_path,
                          hooks=build.Hooks(finished=heard.append))
    runner.run(Progress([(job.key, "nowhere") for job in the_plan.jobs], out=io.StringIO()))
    assert sorted(result.key for result in heard) == sorted(job.key for job in the_plan.jobs)
    assert len(heard) == 2
