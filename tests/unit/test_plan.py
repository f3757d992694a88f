"""The plan (pure) and the builders configuration: no engine, no registry needed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.model import builders as builders_file
from builder.farm import engines
from builder.model import versions
from builder.model.builders import Builders, Engine
from builder.model.errors import InputError
from builder.plan.dockerfile import from_images, rewrite_from
from builder.plan.plan import build_args, plan
from builder.model.platforms import PLATFORMS, platform
from tests.helpers.families import derived_family
from tests.helpers.cli import invoke
from tests.helpers.paths import ROOT

LINUX = tuple(p for p in PLATFORMS.values() if p.os == "linux")


def linux_only() -> Builders:
    return Builders((Engine("local", "unix:///var/run/docker.sock", LINUX),))


@pytest.fixture(scope="module")
def python_family():
    return versions.load(ROOT / "versions.yaml")


def test_the_3_8_0_plan_builds_every_linux_image_and_skips_windows_without_an_engine(
        python_family):
    the_plan = plan(python_family, "3.8.0", builders=linux_only())

    counts = {}
    for job in the_plan.jobs:
        counts[job.variant.name] = counts.get(job.variant.name, 0) + 1
    assert counts == {"buster": 7, "slim-buster": 7, "alpine3.10": 7}
    assert {j.platform.name for j in the_plan.jobs if j.variant.name == "alpine3.10"} == {
        "amd64", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x"}
    assert [(s.variant.name, s.platform.os_version) for s in the_plan.skipped] == [
        ("windowsservercore-ltsc2016", "10.0.14393"), ("windowsservercore-1803", "10.0.17134"),
        ("windowsservercore-1809", "10.0.17763")]
    assert all("no engine serves windows-amd64 (10.0." in s.reason for s in the_plan.skipped)
    text = the_plan.describe()
    assert "21 jobs, 3 skipped" in text
    assert "python:3.8.0-buster-arm64v8" in text


def test_a_windows_engine_takes_only_its_own_os_version(python_family):
    windows = platform("windows-amd64").with_os_version("10.0.17763")
    builders = Builders(linux_only().engines + (
        Engine("win1809", "tcp://10.0.0.9:2376", (windows,), os_version="10.0.17763"),))

    the_plan = plan(python_family, "3.8.0", builders=builders, registry="127.0.0.1:5000")

    windows_jobs = [j for j in the_plan.jobs if j.platform.os == "windows"]
    assert [(j.variant.name, j.pool) for j in windows_jobs] == [
        ("windowsservercore-1809", ("win1809",))]
    assert str(windows_jobs[0].image) == (
        "127.0.0.1:5000/python:3.8.0-windowsservercore-1809-windows-amd64")
    assert [s.variant.name for s in the_plan.skipped] == [
        "windowsservercore-ltsc2016", "windowsservercore-1803"]


def test_jobs_carry_tags_build_args_and_the_per_arch_reference(tiny_family_path):
    family = versions.load(tiny_family_path)

    the_plan = plan(family, "1.0", ("slim-busybox",), ("linux/arm/v7", "s390x"),
                    builders=linux_only(), registry="127.0.0.1:5000")

    assert [j.key for j in the_plan.jobs] == ["1.0.0/slim-busybox/arm32v7",
                                              "1.0.0/slim-busybox/s390x"]
    job = the_plan.jobs[0]
    assert str(job.image) == "127.0.0.1:5000/tiny:1.0.0-slim-busybox-arm32v7"
    assert job.build_args == {"TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux",
                              "TARGETARCH": "arm", "TARGETVARIANT": "v7"}
    assert "1.0.0-slim" in job.tags and "slim" in job.tags
    assert job.dockerfile == Path("1.0/busybox/slim/Dockerfile")
    assert from_images(job.dockerfile_text) == ["busybox:latest"]

    namespaced = plan(family, "1.0.0", ("busybox",), ("arm64v8",), builders=linux_only(),
                      registry="127.0.0.1:5000", arch_namespace=True)
    assert str(namespaced.jobs[0].image) == "127.0.0.1:5000/arm64v8/tiny:1.0.0-busybox"
    local = plan(family, "1.0.0", ("busybox",), ("amd64",), builders=linux_only())
    assert str(local.jobs[0].image) == "tiny:1.0.0-busybox-amd64"


@pytest.mark.parametrize("variants, platforms, message", [
    (("stretch",), (), "1.0.0 has no variant 'stretch'"),
    ((), ("sparc64",), "unknown platform 'sparc64'"),
    ((), ("linux/arm/v9",), "unknown platform 'linux/arm/v9'"),
    (("busybox",), ("mips64le",), "mips64le: no selected variant of 1.0.0 builds that"),
])
def test_unknown_selections_are_refused_before_anything_runs(tiny_family_path, variants,
                                                             platforms, message):
    family = versions.load(tiny_family_path)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(family, "1.0.0", variants, platforms, builders=linux_only())


def test_build_args_follow_buildkit_naming():
    assert build_args(platform("arm64v8"))["TARGETPLATFORM"] == "linux/arm64"
    assert build_args(platform("arm64v8"))["TARGETVARIANT"] == ""
    assert build_args(platform("i386")) == {"TARGETPLATFORM": "linux/386", "TARGETOS": "linux",
                                            "TARGETARCH": "386", "TARGETVARIANT": ""}


def test_from_lines_are_found_and_pinned_but_stages_and_scratch_are_left_alone():
    text = ("FROM --platform=$BUILDPLATFORM golang:1.13 AS build\nRUN make\n"
            "from scratch\nFROM build AS again\nFROM busybox:latest\nCOPY --from=build /x /x\n")
    assert from_images(text) == ["golang:1.13", "busybox:latest"]
    pinned = rewrite_from(text, {"busybox:latest": "m:5000/library/busybox@sha256:ab",
                                 "golang:1.13": "m:5000/library/golang@sha256:cd"})
    assert pinned.splitlines() == [
        "FROM --platform=$BUILDPLATFORM m:5000/library/golang@sha256:cd AS build", "RUN make",
        "from scratch", "FROM build AS again", "FROM m:5000/library/busybox@sha256:ab",
        "COPY --from=build /x /x"]


def test_a_variant_built_from_another_comes_after_it(tmp_path, tiny_family_path):
    family = versions.load(derived_family(tmp_path, tiny_family_path))

    the_plan = plan(family, "1.0.0", ("onbuild", "busybox"), ("amd64", "arm64v8"),
                    builders=linux_only())

    assert [j.key for j in the_plan.jobs] == [
        "1.0.0/busybox/amd64", "1.0.0/busybox/arm64v8",
        "1.0.0/onbuild/amd64", "1.0.0/onbuild/arm64v8"]
    assert the_plan.jobs[2].parent == "1.0.0/busybox/amd64"

    alone = plan(family, "1.0.0", ("onbuild",), builders=linux_only())
    assert alone.jobs == ()
    assert [s.reason for s in alone.skipped] == [
        "it builds FROM 1.0.0/busybox/amd64, which is not in this run",
        "it builds FROM 1.0.0/busybox/arm64v8, which is not in this run"]


BAD_BUILDERS = [
    ("engines: [\n", 2, None, "not valid YAML"),
    ("engine:\n  - {name: a}\n", 1, "engine", "unknown key"),
    ("engines:\n  - name: a\n    url: http://x\n    platforms: [amd64]\n", 3, "engines[0].url",
     "not an engine url"),
    ("engines:\n  - name: a\n    url: unix:///x\n    platforms: [amd64, sparc]\n", 4,
     "engines[0].platforms[1]", "unknown platform 'sparc'"),
    ("engines:\n  - name: a\n    url: unix:///x\n    platforms: [windows-amd64]\n", 4,
     "engines[0].platforms[0]", "needs the engine's `os-version`"),
    ("engines:\n  - name: a\n    url: unix:///x\n    platforms: [amd64]\n    concurrency: 0\n",
     5, "engines[0].concurrency", "not a positive whole number"),
    ("engines:\n  - {name: a, url: 'unix:///x', platforms: [amd64]}\n"
     "  - {name: a, url: 'unix:///y', platforms: [i386]}\n", 3, "engines[1].name", "used twice"),
    ("engines:\n  - name: a\n    url: unix:///x\n", 2, "engines[0].platforms", "missing"),
    ("engines:\n  - name: a\n    url: tcp://h:2376\n    platforms: [amd64]\n"
     "    tls: {ca: nowhere.pem}\n", 5, "engines[0].tls.ca", "no such file"),
    ("engines:\n  - name: a\n    url: unix:///x\n    platforms: [amd64]\n    builder: kaniko\n",
     5, "engines[0].builder", "'kaniko' is not classic or buildkit"),
    ("engines:\n  - name: a\n    url: unix:///x\n    os-version: 10.0.17763\n"
     "    platforms: [windows-amd64]\n    builder: buildkit\n", 6, "engines[0].builder",
     "Windows images build with the classic builder only"),
    ("base-mirror: http://m:5000\nengines:\n  - {name: a, url: 'unix:///x', platforms: [amd64]}\n",
     1, "base-mirror", "no scheme"),
]


@pytest.mark.parametrize("text, line, field, message", BAD_BUILDERS)
def test_builders_file_mistakes_name_file_line_and_field(tmp_path, text, line, field, message):
    path = tmp_path / "builders.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        builders_file.parse(path)
    shown = str(caught.value)
    assert shown.startswith(f"{path}:{line}: ")
    if field:
        assert f": {field}: " in shown
    assert message in shown


def test_builders_file_and_environment_overrides(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "builders.yaml"
    path.write_text("base-mirror: mirror.example:5000\nengines:\n"
                    "  - {name: local, url: 'unix:///var/run/docker.sock', platforms: [amd64, i386],"
                    " concurrency: 2}\n"
                    "  - name: arm-node\n    url: tcp://10.0.0.7:2376\n    tls: {ca: ca.pem}\n"
                    "    platforms: [linux/arm64/v8, arm32v7]\n"
                    "  - {name: win, url: 'ssh://me@win', platforms: [windows-amd64],"
                    " os-version: 10.0.17763}\n")

    loaded = engines.load(path, env={"BUILDER_ENGINE_ARM_NODE_URL": "tcp://10.0.0.8:2376"})
    assert loaded.base_mirror == "mirror.example:5000"
    assert [(e.name, e.url, e.concurrency) for e in loaded.engines] == [
        ("local", "unix:///var/run/docker.sock", 2), ("arm-node", "tcp://10.0.0.8:2376", 1),
        ("win", "ssh://me@win", 1)]
    assert loaded.engines[1].tls.ca == str(tmp_path / "ca.pem")
    assert [e.name for e in loaded.pool_for(platform("arm64v8"))] == ["arm-node"]
    assert [e.name for e in loaded.pool_for(platform("windows-amd64").with_os_version("10.0.17763"))] \
        == ["win"]
    assert loaded.pool_for(platform("windows-amd64").with_os_version("10.0.14393")) == ()
    assert loaded.pool_for(platform("s390x")) == ()

    from_env = engines.load(None, env={"BUILDER_BUILDERS": str(path),
                                       "BUILDER_BASE_MIRROR": "other:5000"})
    assert from_env.base_mirror == "other:5000" and from_env.source == str(path)


def _binfmt_entry(directory: Path, name: str, magic: str, *, flags: str = "PF",
                  enabled: bool = True) -> None:
    (directory / name).write_text(
        f"{'enabled' if enabled else 'disabled'}\ninterpreter /usr/libexec/qemu-binfmt/{name}\n"
        f"flags: {flags}\noffset 0\nmagic {magic}\nmask ffffffffffffff00fffffffffffffffffeffffff\n")


def test_binfmt_handlers_are_read_from_their_elf_magic(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "register").write_text("")
    # Magic strings as qemu-user-static registers them on Debian bookworm.
    _binfmt_entry(tmp_path, "qemu-aarch64", "7f454c460201010000000000000000000200b700")
    _binfmt_entry(tmp_path, "qemu-arm", "7f454c4601010100000000000000000002002800")
    _binfmt_entry(tmp_path, "qemu-s390x", "7f454c4602020100000000000000000000020016")
    _binfmt_entry(tmp_path, "qemu-ppc64le", "7f454c4602010100000000000000000002001500",
                  enabled=False)
    _binfmt_entry(tmp_path, "qemu-riscv64", "7f454c460201010000000000000000000200f300", flags="P")
    _binfmt_entry(tmp_path, "qemu-sparc", "7f454c4601020100000000000000000000020002")
    (tmp_path / "jar").write_text("enabled\ninterpreter /usr/bin/jexec\nflags: \noffset 0\n"
                                  "magic 504b0304\n")

    # riscv64 lacks F (its interpreter is not usable inside a container); ppc64le is disabled.
    assert builders_file.binfmt_architectures(tmp_path) == {"arm64", "arm", "s390x"}
    assert builders_file.runnable_architectures("amd64", local=False, binfmt_dir=tmp_path) == {"amd64"}
    (tmp_path / "status").write_text("disabled\n")
    assert builders_file.binfmt_architectures(tmp_path) == set()


def test_dry_run_prints_the_3_8_0_plan_without_an_engine_when_builders_are_configured(tmp_path):
    builders = tmp_path / "builders.yaml"
    builders.write_text("engines:\n  - name: nowhere\n    url: unix:///nonexistent/docker.sock\n"
                        f"    platforms: [{', '.join(p.name for p in LINUX)}]\n")

    done = invoke("build", "--version", "3.8.0", "--dry-run", "--builders", str(builders))

    assert done.returncode == 0, done.stderr
    assert "plan for python 3.8.0: 21 jobs, 3 skipped" in done.stdout
    assert "3.8.0/alpine3.10/arm32v6" in done.stdout
    assert f"skipped: no engine serves windows-amd64 (10.0.17763): add one to {builders}" \
        in done.stdout


def test_dry_run_says_when_the_local_engine_cannot_be_reached(tmp_path):
    done = invoke("build", "--version", "3.8.0", "--dry-run",
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "BUILDER_BUILDERS": ""})

    assert done.returncode == 0, done.stderr
    assert "0 jobs, 24 skipped" in done.stdout
    assert f"warning: cannot reach the local Docker engine at unix://{tmp_path}/no.sock" \
        in done.stdout
