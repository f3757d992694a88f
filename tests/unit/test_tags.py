"""Tags, shared tags and the library file, against what official-images published
for python 3.8.0 on 2019-10-14 (official-images e02a1799, python 1ea0c72).

Since 3.14 joined, `3`, `latest` and the bare variant tags are 3.14's; the 2019
publication is checked against the family as it was then (3.8.0 holding them)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import pytest

from builder.generate.library import library_file
from builder.model.tags import tag_groups, variant_tags
from builder.model.versions import load
from tests.helpers.cli import invoke
from tests.helpers.git import git
from tests.helpers.paths import ROOT

COMMIT_2019 = "1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc"

PUBLISHED_3_8 = """\
Tags: 3.8.0-buster, 3.8-buster, 3-buster, buster
SharedTags: 3.8.0, 3.8, 3, latest
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, s390x
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/buster

Tags: 3.8.0-slim-buster, 3.8-slim-buster, 3-slim-buster, slim-buster, 3.8.0-slim, 3.8-slim, 3-slim, slim
Architectures: amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, s390x
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/buster/slim

Tags: 3.8.0-alpine3.10, 3.8-alpine3.10, 3-alpine3.10, alpine3.10, 3.8.0-alpine, 3.8-alpine, 3-alpine, alpine
Architectures: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, s390x
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/alpine3.10

Tags: 3.8.0-windowsservercore-ltsc2016, 3.8-windowsservercore-ltsc2016, 3-windowsservercore-ltsc2016, windowsservercore-ltsc2016
SharedTags: 3.8.0-windowsservercore, 3.8-windowsservercore, 3-windowsservercore, windowsservercore, 3.8.0, 3.8, 3, latest
Architectures: windows-amd64
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/windows/windowsservercore-ltsc2016
Constraints: windowsservercore-ltsc2016

Tags: 3.8.0-windowsservercore-1803, 3.8-windowsservercore-1803, 3-windowsservercore-1803, windowsservercore-1803
SharedTags: 3.8.0-windowsservercore, 3.8-windowsservercore, 3-windowsservercore, windowsservercore, 3.8.0, 3.8, 3, latest
Architectures: windows-amd64
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/windows/windowsservercore-1803
Constraints: windowsservercore-1803

Tags: 3.8.0-windowsservercore-1809, 3.8-windowsservercore-1809, 3-windowsservercore-1809, windowsservercore-1809
SharedTags: 3.8.0-windowsservercore, 3.8-windowsservercore, 3-windowsservercore, windowsservercore, 3.8.0, 3.8, 3, latest
Architectures: windows-amd64
GitCommit: 1ea0c7233e5c56ac59f7e0719df33f3a2bade7fc
Directory: 3.8/windows/windowsservercore-1809
Constraints: windowsservercore-1809
"""


@pytest.fixture(scope="module")
def python_family():
    return load(ROOT / "versions.yaml")


def stanzas(text: str) -> list[str]:
    return [s.strip("\n") + "\n" for s in text.split("\n\n") if s.startswith("Tags:")]


def as_in_2019(family):
    """The family before 3.14 and 3.13: 3.8.0 newest, holding 3 and latest."""
    old = [v for v in family.versions if v.pip is not None]
    old[0] = dataclasses.replace(old[0], aliases=("3", "latest"))
    return dataclasses.replace(family, versions=tuple(old))


def with_builder_field(text: str) -> str:
    """The 2019 stanzas as official-images reads them today: its Builder field came later,
    and Windows stanzas name the classic builder (the header names buildkit for the rest)."""
    return "".join(line + ("Builder: classic\n" if line.startswith("Constraints: ") else "")
                   for line in text.splitlines(keepends=True))


def without_major_and_latest(text: str) -> str:
    """The 2019 stanzas after 3 and latest (and so the bare variant tags) moved on."""
    kept = []
    for line in text.splitlines():
        if line.startswith(("Tags: ", "SharedTags: ")):
            key, tags = line.split(": ", 1)
            tags = [t for t in tags.split(", ") if t.startswith("3.8")]
            line = f"{key}: {', '.join(tags)}"
        kept.append(line)
    return "\n".join(kept) + "\n"


def test_the_3_8_stanzas_are_the_published_ones(python_family):
    text = library_file(as_in_2019(python_family), lambda directory: COMMIT_2019)
    ours = [s for s in stanzas(text) if "Directory: 3.8/" in s]
    assert ours == stanzas(with_builder_field(PUBLISHED_3_8))


def test_3_8_keeps_its_version_tags_now_that_3_14_is_latest(python_family):
    text = library_file(python_family, lambda directory: COMMIT_2019)
    ours = [s for s in stanzas(text) if "Directory: 3.8/" in s]
    assert ours == stanzas(with_builder_field(without_major_and_latest(PUBLISHED_3_8)))
    assert ours[1].startswith("Tags: 3.8.0-slim-buster, 3.8-slim-buster, 3.8.0-slim, 3.8-slim\n")


def test_the_header(python_family):
    text = library_file(python_family, lambda directory: COMMIT_2019)
    header = text.split("\n\nTags:", 1)[0]
    assert "\nMaintainers: " in header and "\nGitRepo: https://" in header
    assert header.endswith("\nBuilder: buildkit")
    windows = [s for s in stanzas(text) if "Constraints: " in s]
    linux = [s for s in stanzas(text) if "Constraints: " not in s]
    assert windows and all(s.endswith("\nBuilder: classic\n") for s in windows)
    assert linux and not any("Builder: " in s for s in linux)


def test_a_non_default_version_gets_no_major_or_latest(python_family):
    version = python_family.version("3.7")
    tags = {v.name: variant_tags(python_family, version, v) for v in version.variants}
    assert tags["buster"].tags == ("3.7.5-buster", "3.7-buster")
    assert tags["buster"].shared_tags == ("3.7.5", "3.7")
    assert tags["slim-buster"].tags == ("3.7.5-slim-buster", "3.7-slim-buster", "3.7.5-slim", "3.7-slim")
    # Not the default suite or alpine: no short forms, nothing shared.
    assert tags["stretch"].tags == ("3.7.5-stretch", "3.7-stretch")
    assert tags["slim-stretch"].tags == ("3.7.5-slim-stretch", "3.7-slim-stretch")
    assert tags["alpine3.9"].tags == ("3.7.5-alpine3.9", "3.7-alpine3.9")
    assert all(not tags[n].shared_tags for n in ("slim-buster", "stretch", "slim-stretch", "alpine3.9"))


def test_latest_groups_the_seed_images(python_family):
    python_family = as_in_2019(python_family)
    groups = tag_groups(python_family, python_family.version("3.8.0"))
    names = {tag: [v.name for v in variants] for tag, variants in groups.items()}
    both = ["buster", "windowsservercore-ltsc2016", "windowsservercore-1803", "windowsservercore-1809"]
    assert names["latest"] == names["3"] == names["3.8"] == names["3.8.0"] == both
    assert names["windowsservercore"] == both[1:]
    assert names["slim"] == ["slim-buster"] and names["alpine"] == ["alpine3.10"]
    assert names["3.8.0-windowsservercore-1809"] == ["windowsservercore-1809"]
    every = {t for v in python_family.version("3.8").variants
             for t in variant_tags(python_family, python_family.version("3.8"), v).tags}
    assert every | {"3.8.0", "3.8", "3", "latest", "3.8.0-windowsservercore", "3.8-windowsservercore",
                    "3-windowsservercore", "windowsservercore"} == set(groups)


def test_3_8_0_keeps_the_seed_grouping_under_its_version_tag(python_family):
    groups = tag_groups(python_family, python_family.version("3.8.0"))
    names = {tag: [v.name for v in variants] for tag, variants in groups.items()}
    assert names["3.8.0"] == names["3.8"] == [
        "buster", "windowsservercore-ltsc2016", "windowsservercore-1803", "windowsservercore-1809"]
    assert not {"3", "latest", "slim", "alpine", "buster", "windowsservercore"} & set(groups)


def test_the_tiny_family_follows_the_same_rules(tiny_family_path):
    tiny = load(tiny_family_path)
    version = tiny.version("1.0.0")
    slim = variant_tags(tiny, version, version.variant("slim-busybox"))
    assert slim.tags == ("1.0.0-slim-busybox", "1.0-slim-busybox", "1-slim-busybox", "slim-busybox",
                         "1.0.0-slim", "1.0-slim", "1-slim", "slim")
    groups = tag_groups(tiny, version)
    assert [v.name for v in groups["latest"]] == ["busybox", "windowsservercore-1809"]
    old = tiny.version("0.9.1")
    assert variant_tags(tiny, old, old.variant("busybox")).shared_tags == ("0.9.1", "0.9")


def test_git_commit_is_the_last_one_touching_each_directory(tmp_path):
    """In a throwaway repository: a second commit moves only the entry it touched."""
    shutil.copy(ROOT / "versions.yaml", tmp_path)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    invoke = [sys.executable, "-m", "invoke"]
    subprocess.run(invoke + ["generate", "--versions", str(tmp_path / "versions.yaml")],
                   cwd=ROOT, check=True, capture_output=True)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    first = git(tmp_path, "rev-parse", "HEAD")
    with (tmp_path / "3.8/buster/Dockerfile").open("a") as stream:
        stream.write("# touched\n")
    git(tmp_path, "commit", "-q", "-am", "second")
    second = git(tmp_path, "rev-parse", "HEAD")
    result = subprocess.run(invoke + ["library", "--versions", str(tmp_path / "versions.yaml")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commits = {}
    for block in stanzas(result.stdout):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        commits[fields["Directory"]] = fields["GitCommit"]
    assert commits.pop("3.8/buster") == second
    assert set(commits.values()) == {first}


def test_library_commit_must_be_a_full_id():
    result = invoke("library", "--commit", "1ea0c72")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --commit: '1ea0c72' is not a full")


def test_invoke_library_prints_the_file():
    result = invoke("library", "--commit", COMMIT_2019)
    assert result.returncode == 0, result.stderr
    assert [s for s in stanzas(result.stdout) if "Directory: 3.8/" in s] == \
        stanzas(with_builder_field(without_major_and_latest(PUBLISHED_3_8)))
    assert "\nDirectory: 3.14/slim-trixie\n" in result.stdout


def test_a_release_of_some_variants_and_platforms_publishes_just_their_tags():
    from builder.model.platforms import platform
    from builder.model.versions import load
    from pathlib import Path

    family = load(ROOT / "versions.yaml")
    version = family.version("3.14")
    groups = tag_groups(family, version, ("slim-trixie",), (platform("amd64"), platform("linux/386")))
    assert list(groups) == ["3.14.7-slim-trixie", "3.14-slim-trixie", "3-slim-trixie", "slim-trixie",
                            "3.14.7-slim", "3.14-slim", "3-slim", "slim"]
    for members in groups.values():
        assert [(v.name, [p.name for p in v.platforms]) for v in members] == [
            ("slim-trixie", ["amd64", "i386"])]
    # The shared tags hold trixie and Windows too: not a tag of slim-trixie alone.
    assert "3.14" not in groups and "latest" not in groups
    windows_only = tag_groups(family, version, (), (platform("windows-amd64"),))
    assert [v.name for v in windows_only["3.14"]] == ["windowsservercore-ltsc2025",
                                                      "windowsservercore-ltsc2022"]
    assert "3.14-slim" not in windows_only
