"""The BuildKit backend's pure parts: which builder an engine uses for a platform (by its
builders-file entry and its image store), how buildx is looked for and called, and how its
rawjson progress becomes the classic path's events and errors. The same backend runs against
the modern engine in tests/integration/test_buildkit.py."""
from __future__ import annotations

import base64
import json

import pytest

from builder.farm import buildx
from builder.farm.buildkit import Progress, arguments
from builder.farm.engineapi import Output, Step, StepFailed
from builder.farm.pools import Backend, Facts, Health, backend
from builder.model import builders as builders_file
from builder.model.builders import BUILDKIT, CLASSIC, Engine
from builder.model.platforms import PLATFORMS
from builder.model.reference import ImageRef

CONTAINERD = Facts.from_answers(
    {"Os": "linux", "Arch": "amd64", "Version": "28.5.2"},
    {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]})
GRAPHDRIVER = Facts.from_answers(
    {"Os": "linux", "Arch": "amd64", "Version": "20.10.24"},
    {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]})


def engine(builder: str | None = None) -> Engine:
    return Engine("e", "unix:///e.sock", tuple(PLATFORMS[n] for n in ("amd64", "arm32v5")),
                  builder=builder)


def no_problem() -> None:
    return None


def test_the_store_is_read_from_docker_info():
    assert CONTAINERD.containerd and CONTAINERD.store == "containerd image store (overlayfs)"
    assert not GRAPHDRIVER.containerd and GRAPHDRIVER.store == "graphdriver store (overlay2)"
    assert CONTAINERD == GRAPHDRIVER  # what each runs is the same; the store is not compared


@pytest.mark.parametrize("facts, builder, platform, chosen", [
    (GRAPHDRIVER, None, "arm32v5", CLASSIC),
    (GRAPHDRIVER, None, "amd64", CLASSIC),
    (CONTAINERD, None, "amd64", CLASSIC),
    (CONTAINERD, None, "arm32v7", CLASSIC),  # v7 is arm's default variant: kept
    (CONTAINERD, None, "arm32v5", BUILDKIT),
    (CONTAINERD, None, "arm32v6", BUILDKIT),
    (GRAPHDRIVER, BUILDKIT, "amd64", BUILDKIT),
    (CONTAINERD, BUILDKIT, "amd64", BUILDKIT),
])
def test_the_builder_follows_the_file_else_the_store(facts, builder, platform, chosen):
    found, problem = backend(engine(builder), facts, PLATFORMS[platform], no_problem)
    assert (found, problem) == (Backend(chosen, facts.containerd), None)


def test_classic_on_the_containerd_store_refuses_arm32v5_naming_the_cause():
    found, problem = backend(engine(CLASSIC), CONTAINERD, PLATFORMS["arm32v5"], no_problem)
    assert found.builder == CLASSIC
    assert problem.startswith("its classic builder on the containerd image store (overlayfs) "
                              "would drop the variant v5 of linux/arm/v5 (moby#47823); set "
                              "`builder: buildkit`")
    assert "--no-cache" not in problem


def test_buildkit_without_buildx_refuses_saying_what_to_install():
    missing = lambda: "no docker-buildx on PATH; install buildx"  # noqa: E731
    _, chosen = backend(engine(BUILDKIT), GRAPHDRIVER, PLATFORMS["amd64"], missing)
    _, by_store = backend(engine(), CONTAINERD, PLATFORMS["arm32v5"], missing)
    _, classic = backend(engine(), CONTAINERD, PLATFORMS["amd64"], missing)
    assert chosen == ("it builds amd64 with BuildKit (`builder: buildkit` in the builders file), "
                      "and no docker-buildx on PATH; install buildx")
    assert by_store.startswith("it builds arm32v5 with BuildKit (its classic builder on the "
                               "containerd image store (overlayfs) would drop the variant v5)")
    assert classic is None  # buildx is looked for only where BuildKit builds


def test_a_wrong_platforms_message_names_its_cause():
    arm5 = PLATFORMS["arm32v5"]
    assert "--no-cache" in Backend(CLASSIC, False).wrong_platform("e", arm5, None)
    on_containerd = Backend(CLASSIC, True).wrong_platform("e", arm5, None)
    assert "drops the variant v5" in on_containerd and "--no-cache" not in on_containerd
    assert "no known cause" in Backend(BUILDKIT, True).wrong_platform("e", arm5, None)


def test_the_probe_line_names_store_and_builders():
    health = Health(engines={"e": CONTAINERD}, backends={
        ("e", "amd64"): Backend(CLASSIC, True), ("e", "arm32v5"): Backend(BUILDKIT, True)})
    assert health.engine_lines() == [
        "engine e: Docker 28.5.2 (linux/amd64), containerd image store (overlayfs); builds "
        "with classic: amd64; with buildkit: arm32v5"]
    assert health.backend("e", "arm32v5").builder == BUILDKIT
    assert health.backend("other", "amd64") == Backend()  # not probed: the classic path


def test_the_builders_file_takes_a_builder(tmp_path):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n  - {name: a, url: 'unix:///a', platforms: [amd64], "
                    "builder: buildkit}\n  - {name: b, url: 'unix:///b', platforms: [amd64]}\n")
    assert [e.builder for e in builders_file.parse(path).engines] == [BUILDKIT, None]


def test_buildx_is_looked_for_on_path_then_among_the_cli_plugins(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker-buildx").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "docker-buildx").chmod(0o755)
    found = buildx.candidates({"PATH": str(tmp_path / "bin"), "DOCKER_CONFIG": "/cfg"})
    assert found[:3] == [tmp_path / "bin" / "docker-buildx",
                         buildx.Path("/cfg/cli-plugins/docker-buildx"),
                         buildx.Path("~/.docker/cli-plugins/docker-buildx").expanduser()]
    assert found[-1] == buildx.Path("/usr/libexec/docker/cli-plugins/docker-buildx")


def test_buildx_build_arguments():
    argv = arguments(ImageRef.parse("127.0.0.1:5000/hello:1.0.0-busybox-arm32v5"),
                     PLATFORMS["arm32v5"], build_args={"TARGETVARIANT": "v5"},
                     labels={"hash": "sha256:1"}, nocache=True, host_network=True)
    assert argv == ["build", "--progress=rawjson", "--platform", "linux/arm/v5", "--load",
                    "--provenance=false", "--sbom=false", "--tag",
                    "127.0.0.1:5000/hello:1.0.0-busybox-arm32v5", "--label", "hash=sha256:1",
                    "--build-arg", "TARGETVARIANT=v5", "--network", "host", "--no-cache", "-"]


# What buildx 0.29 printed for a RUN step that failed (trimmed to the lines that matter).
RUN = "[2/2] RUN set -x && echo about to fail && exit 3"


def status(**fields) -> str:
    return json.dumps(fields)


def log(vertex: str, text: str) -> str:
    return status(logs=[{"vertex": vertex, "stream": 2,
                         "data": base64.b64encode(text.encode()).decode()}])


FAILED_RUN = [
    status(vertexes=[{"digest": "sha256:a", "name": "[internal] load build definition"}]),
    status(vertexes=[{"digest": "sha256:b", "name": "[1/2] FROM 127.0.0.1:5000/busybox@sha256:1",
                      "started": "t", "completed": "t", "cached": True}]),
    status(vertexes=[{"digest": "sha256:c", "name": RUN, "started": "t"}]),
    log("sha256:c", "+ echo about to fail\nabout to "),
    log("sha256:c", "fail\n+ exit 3\n"),
    status(vertexes=[{"digest": "sha256:c", "name": RUN, "started": "t", "completed": "t",
                      "error": 'process "/bin/sh -c set -x && echo about to fail && exit 3" did '
                               'not complete successfully: exit code: 3'}]),
    "Dockerfile:2",
    "ERROR: failed to build: failed to solve: process \"/bin/sh -c …\" did not complete "
    "successfully: exit code: 3",
]


def test_a_failed_run_step_reads_as_the_classic_paths_events_and_error():
    events = []
    progress = Progress(events.append)
    for line in FAILED_RUN:
        progress.feed(line)

    assert [e for e in events if isinstance(e, Step)] == [
        Step(1, 2, "FROM 127.0.0.1:5000/busybox@sha256:1"),
        Step(2, 2, "RUN set -x && echo about to fail && exit 3")]
    text = "".join(e.text for e in events if isinstance(e, Output))
    assert "about to fail\n" in text and "CACHED" in text and text.endswith("exit code: 3\n")
    error = progress.error(engine(), 1)
    assert isinstance(error, StepFailed) and error.exit_code == 3
    assert str(error) == ("step 2/2 (RUN set -x && echo about to fail && exit 3) failed with exit "
                          "code 3 at `exit 3` on engine e (BuildKit): the command did not "
                          "complete successfully: exit code: 3")


def test_a_failure_outside_the_steps_is_buildxs_own_words():
    progress = Progress(lambda event: None)
    progress.feed(status(vertexes=[{"digest": "sha256:m", "started": "t",
                                    "name": "[internal] load metadata for 127.0.0.1:9/busybox",
                                    "error": "connection refused"}]))
    progress.feed("ERROR: failed to build: failed to solve: connection refused")
    error = progress.error(engine(), 1)
    assert not isinstance(error, StepFailed)
    assert str(error) == ("the BuildKit build on engine e (unix:///e.sock) failed ([internal] "
                          "load metadata for 127.0.0.1:9/busybox): ERROR: failed to build: failed "
                          "to solve: connection refused")
