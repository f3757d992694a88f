"""--allow-lagging: which members of a tag keep the one it lists now, when a tag is refused for
going back, and how the summary page names a lagging member (pure); then a release past a
failed platform, on stand-in engines and an in-memory registry (testbed/standin.py), no engine
needed. The publish stage against a real registry is in tests/test_publish.py."""
from __future__ import annotations

import io

import pytest

from builder.commands import release
from builder.generate import tree
from builder.model import versions
from builder.model.errors import PublishRefused
from builder.model.platforms import PLATFORMS
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST
from builder.model.versions import image_version
from builder.publish.rules import Listed, Verdict, lagging
from builder.registry.client import RegistryClient
from builder.summary.page import Document, ImageDocuments, TagDocuments, render as render_page
from testbed.memregistry import MemoryRegistry
from testbed.standin import standing_in

AMD64, RISCV = PLATFORMS["amd64"], PLATFORMS["riscv64"]
WIN = PLATFORMS["windows-amd64"].with_os_version("10.0.26100")
OLD, NEW, OTHER = "sha256:" + "0" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64
MEMBERS = [("3.14.7/slim-trixie/amd64", AMD64), ("3.14.7/slim-trixie/riscv64", RISCV)]


def verdicts(riscv: Verdict) -> dict[str, Verdict]:
    return {"3.14.7/slim-trixie/amd64": Verdict("r/amd64", NEW),
            "3.14.7/slim-trixie/riscv64": riscv}


def test_a_member_this_run_has_no_image_of_keeps_the_tags_current_one():
    listed = [Listed(AMD64, OLD, "3.14.6"), Listed(RISCV, OTHER, "3.14.6")]
    kept, problem = lagging("3.14.7", MEMBERS, verdicts(Verdict("r/riscv64")), listed)
    assert problem is None
    assert kept == {"3.14.7/slim-trixie/riscv64": Listed(RISCV, OTHER, "3.14.6")}


def test_a_member_this_run_has_an_image_of_does_not_lag():
    listed = [Listed(AMD64, OLD, "3.14.6"), Listed(RISCV, OTHER, "3.14.6")]
    assert lagging("3.14.7", MEMBERS, verdicts(Verdict("r/riscv64", NEW)), listed) == ({}, None)


def test_a_platform_the_tag_does_not_list_has_nothing_to_keep():
    kept, problem = lagging("3.14.7", MEMBERS, verdicts(Verdict("r/riscv64")),
                            [Listed(AMD64, OLD, "3.14.6")])
    assert kept == {} and problem is None  # riscv64 stays missing: --allow-missing's call


def test_a_tag_never_goes_back_to_an_older_member():
    listed = [Listed(AMD64, OLD, "3.14.8"), Listed(RISCV, OTHER, "3.14.6")]
    _, problem = lagging("3.14.7", MEMBERS, verdicts(Verdict("r/riscv64")), listed)
    assert isinstance(problem, PublishRefused)
    assert "amd64 at 3.14.8" in str(problem) and "3.14.7" in str(problem)


@pytest.mark.parametrize("current", [None, "3.14.7", "3.14.7rc1", "3.13.9"])
def test_a_member_the_same_older_or_unlabelled_is_replaced(current):
    listed = [Listed(AMD64, OLD, current)]
    assert lagging("3.14.7", MEMBERS[:1], verdicts(Verdict("r")), listed) == ({}, None)


def test_windows_members_match_by_their_os_version_line():
    listed = [Listed(PLATFORMS["windows-amd64"].with_os_version("10.0.26100.4061"), OLD, "3.14.6"),
              Listed(PLATFORMS["windows-amd64"].with_os_version("10.0.20348.3692"), OTHER,
                     "3.14.6")]
    kept, _ = lagging("3.14.7", [("3.14.7/windowsservercore-ltsc2025/windows-amd64", WIN)],
                      {"3.14.7/windowsservercore-ltsc2025/windows-amd64": Verdict("r")}, listed)
    assert [entry.digest for entry in kept.values()] == [OLD]


@pytest.mark.parametrize("env, found", [
    (["PATH=/usr/local/bin", "PYTHON_VERSION=3.14.6", "PYTHON_SHA256=ab"], "3.14.6"),
    (["PYTHON_PIP_VERSION=19.3", "PYTHON_VERSION=3.8.0"], "3.8.0"),
    (["HELLO_VERSION=1.0.0"], None), (["PYTHON_VERSION=latest"], None), (None, None)])
def test_an_images_version_is_its_repositorys_version_variable(env, found):
    assert image_version({"config": {"Env": env}}, "127.0.0.1:5000/python") == found


def _image(architecture: str, version: str | None) -> ImageDocuments:
    env = [f"PYTHON_VERSION={version}"] if version else []
    config = {"architecture": architecture, "os": "linux", "config": {"Env": env}}
    manifest = {"config": {"digest": "sha256:" + "c" * 64}, "layers": []}
    return ImageDocuments(Document(DOCKER_MANIFEST, "sha256:" + "e" * 64, manifest), config,
                          platform={"architecture": architecture, "os": "linux"})


def test_the_page_names_a_lagging_member_and_its_newer_siblings_version():
    tag = TagDocuments("python:3.14-slim", "python", Document(DOCKER_LIST, NEW, {}),
                       (_image("amd64", "3.14.7"), _image("riscv64", "3.14.6")))
    lines = render_page(tag).splitlines()
    assert lines.count("-\tLagging: `3.14.6`; the tag's newest members are `3.14.7`") == 1
    riscv = lines.index("### `python:3.14-slim` - linux; riscv64")
    # First under the riscv64 image's heading and pull block:
    assert lines[riscv + 6] == "-\tLagging: `3.14.6`; the tag's newest members are `3.14.7`"


@pytest.mark.parametrize("versions", [("3.14.7", "3.14.7"), ("3.14.7", None), (None, None)])
def test_a_page_of_one_version_or_without_labels_names_none(versions):
    tag = TagDocuments("python:3.14-slim", "python", Document(DOCKER_LIST, NEW, {}),
                       (_image("amd64", versions[0]), _image("riscv64", versions[1])))
    assert "Lagging" not in render_page(tag)


# --- a release, end to end: stand-in engines, an in-memory registry ---------------------------

TEMPLATE = "FROM {{ variant.base_image }}\nENV TINY_VERSION {{ version.full }}\nRUN true\n"
FAMILY = """repository: tiny
variants:
  busybox: {template: tiny, from: "registry.test/base/busybox:1", platforms: [amd64, riscv64]}
versions:
  - version: VERSION
    variants: [busybox]
"""


@pytest.fixture
def tiny(tmp_path):
    """The tiny family at 1.0.0, released to registry.test (in memory) on two stand-in
    engines; a function that moves it to another version (the tree regenerated)."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "tiny.Dockerfile.j2").write_text(TEMPLATE)
    (tmp_path / "builders.yaml").write_text(
        "engines:\n" + "".join(f"  - name: {name}\n    url: unix:///dev/null\n"
                               f"    platforms: [{name}]\n" for name in ("amd64", "riscv64")))
    registry = MemoryRegistry(token_services={})
    registry.put_base("registry.test", "base/busybox", "1", [AMD64, RISCV])

    def at(version: str) -> None:
        (tmp_path / "versions.yaml").write_text(FAMILY.replace("VERSION", version))
        tree.generate(versions.load(tmp_path / "versions.yaml"), tmp_path)

    at("1.0.0")
    with standing_in(registry, ("registry.test",)):
        assert _release(tmp_path, "1.0.0").exit_code == 0
    return tmp_path, registry, at


def _release(home, version: str, **options):
    return release.run(release.ReleaseOptions(
        version, "registry.test", builders=str(home / "builders.yaml"),
        versions=str(home / "versions.yaml"), out=str(home / "out"), logs=str(home / "logs"),
        **options), out=io.StringIO())


def test_a_release_with_a_failed_platform_publishes_nothing_by_default(tiny):
    home, registry, at = tiny
    at("1.0.1")
    with standing_in(registry, ("registry.test",), failing=frozenset({"riscv64"})):
        before = RegistryClient("registry.test").get_manifest("tiny", "1.0-busybox").digest
        result = _release(home, "1.0.1")
        assert result.exit_code == 1 and result.report.tags == []
        assert RegistryClient("registry.test").get_manifest("tiny", "1.0-busybox").digest == before


def test_allow_lagging_publishes_past_the_failed_platform_keeping_its_member(tiny):
    home, registry, at = tiny
    at("1.0.1")
    with standing_in(registry, ("registry.test",), failing=frozenset({"riscv64"})):
        client = RegistryClient("registry.test")
        old = client.get_manifest("tiny", "1.0.0-busybox-riscv64").digest
        result = _release(home, "1.0.1", allow_lagging=True, allow_missing=True)
        tags = {tag["tag"]: tag for tag in result.report.tags}
        series = {m["platform"]["architecture"]: m["digest"]
                  for m in client.get_manifest("tiny", "1.0-busybox").json["manifests"]}
    assert result.exit_code == 1  # a job failed: the release says so, and published anyway
    assert result.report.stages["build"]["status"] == "failed"
    assert tags["1.0-busybox"]["lagging"] == ("linux/riscv64 at 1.0.0",)
    assert series["riscv64"] == old
    # The new version's own tag has nothing to lag onto: without riscv64 (--allow-missing).
    assert tags["1.0.1-busybox"]["lagging"] == () and tags["1.0.1-busybox"]["missing"]
    page = (home / "out" / "tiny" / "remote" / "1.0-busybox.md").read_text()
    assert "-\tLagging: `1.0.0`; the tag's newest members are `1.0.1`" in page
