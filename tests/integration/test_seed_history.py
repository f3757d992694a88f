"""The generated 3.8.0 Dockerfiles reproduce the seed's image history, byte for byte.

The seed is the published `python:latest` page of October 2019: 7 Linux sections
built from 3.8/buster and 3 Windows sections from the servercore variants. Each
section's history is its parent's entries followed by ours; we compare ours.
"""
from __future__ import annotations

import io
import os
import re

import pytest

from builder.model.platforms import from_oci
from builder.generate.render import dockerfile_path, render
from builder.model.tags import tag_groups
from builder.model.versions import load

from tests.helpers.dockerfile_history import LINUX_PARENT_ENV, history
from tests.helpers.paths import ROOT, SEED_PAGE


# Entries that come from the parent image: Debian's ADD and CMD plus four
# buildpack-deps RUNs; on Windows the two servercore base layers.
PARENT_ENTRIES = {"linux": 6, "windows": 2}


def seed_sections(text: str) -> dict[str, list[str]]:
    """Platform heading ("linux; arm variant v5") → the history lines of its dockerfile block."""
    sections = {}
    for chunk in text.split("\n### ")[1:]:
        heading = chunk.split("\n", 1)[0]
        platform = heading.split(" - ", 1)[1]
        block = re.search(r"```dockerfile\n(.*?)\n```", chunk, re.S).group(1)
        sections[platform] = [line for line in block.split("\n") if not line.startswith("# ")]
    return sections


def section_platform(heading: str):
    """`linux; arm variant v5` / `windows version 10.0.17763.805; amd64` → (Platform, os.version)."""
    system, architecture = heading.split("; ")
    words = architecture.split()
    variant = words[2] if len(words) == 3 else None
    os_name, _, os_version = system.partition(" version ")
    return from_oci(os_name, words[0], variant), os_version or None


@pytest.fixture(scope="module")
def sections():
    if not SEED_PAGE.is_file():
        pytest.fail(f"seed page not found at {SEED_PAGE}: set SEED_PAGE to its path", pytrace=False)
    return seed_sections(SEED_PAGE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def family():
    return load(ROOT / "versions.yaml")


def test_seed_has_the_ten_platform_sections(sections):
    assert len(sections) == 10
    assert sum(h.startswith("linux") for h in sections) == 7


def test_each_section_matches_our_dockerfile(sections, family):
    version = family.version("3.8.0")
    # The seed is 2019's python:latest; 3.8.0's own tag still groups those images.
    latest = tag_groups(family, version)["3.8.0"]
    rendered = render(family)
    compared = 0
    for heading, entries in sections.items():
        platform, os_version = section_platform(heading)
        [variant] = [v for v in latest
                     if any(p.matches(platform.os, platform.architecture, platform.variant, os_version)
                            for p in v.platforms)]
        text = rendered[dockerfile_path(version, variant)]
        ours = history(text, LINUX_PARENT_ENV if platform.os == "linux" else {})
        assert len(entries) == PARENT_ENTRIES[platform.os] + len(ours), heading
        assert entries[PARENT_ENTRIES[platform.os]:] == ours, heading
        compared += 1
    assert compared == 10


def test_the_comparison_catches_a_changed_byte(sections, family):
    """A single tab more in a RUN line is a mismatch: the oracle is exact."""
    version = family.version("3.8.0")
    text = render(family)[dockerfile_path(version, version.variant("buster"))]
    changed = text.replace("\t&& ldconfig", "\t\t&& ldconfig")
    entries = sections["linux; amd64"][PARENT_ENTRIES["linux"]:]
    assert history(text, LINUX_PARENT_ENV) == entries
    assert history(changed, LINUX_PARENT_ENV) != entries


ENGINE_PROBE = """\
FROM {base}
# A comment line before the first instruction.
ENV PATH /usr/local/bin:$PATH
ENV GREETING hello
SHELL ["/bin/sh", "-c"]
RUN set -ex \\
\t\\
\t&& echo "$GREETING" \\
# A comment inside the continuation leaves no tab behind.
\t\t&& echo two \\

\t&& true
CMD ["sh", "-c", "echo $GREETING"]
"""


@pytest.fixture(scope="module")
def base_image(docker_client, mirror):
    """A Linux parent from the mirror, and its environment (what ENV expands against)."""
    reference = f"{mirror.host}/library/busybox:latest"
    docker_client.images.pull(reference)
    config = docker_client.images.get(reference).attrs["Config"]
    return reference, dict(e.split("=", 1) for e in config.get("Env") or [])


def engine_history(client, text: str, shell: str) -> list[str]:
    """Build on the local engine (classic builder) and show its history as repo-info does."""
    image, _ = client.images.build(fileobj=io.BytesIO(text.encode()), rm=True, pull=False)
    try:
        recorded = [entry["CreatedBy"] for entry in reversed(client.api.history(image.id))]
    finally:
        client.images.remove(image.id, force=True)
    shown = []
    for created_by in recorded:
        if created_by.startswith(f"{shell} #(nop) "):
            shown.append(created_by.removeprefix(f"{shell} #(nop) ").lstrip(" "))
        else:
            shown.append("RUN " + created_by.removeprefix(f"{shell} "))
    return shown


def test_the_oracle_agrees_with_the_classic_builder(docker_client, base_image):
    """The parsing rules the seed comparison relies on, checked against the real engine."""
    reference, parent_env = base_image
    text = ENGINE_PROBE.format(base=reference)
    ours = history(text, parent_env)
    assert engine_history(docker_client, text, "/bin/sh -c")[-len(ours):] == ours
    assert ours[-2] == 'RUN set -ex \t\t&& echo "$GREETING" \t\t&& echo two \t&& true'


def test_the_engine_records_our_3_8_dockerfile_as_the_oracle_says(docker_client, base_image, family):
    """The real 3.8/buster text through the real parser. A SHELL of /bin/true makes every
    RUN a no-op, so nothing is downloaded or compiled, while the recorded text stays ours."""
    reference, parent_env = base_image
    version = family.version("3.8.0")
    text = render(family)[dockerfile_path(version, version.variant("buster"))]
    text = text.replace("FROM buildpack-deps:buster\n",
                        f'FROM {reference}\nSHELL ["/bin/true"]\n', 1)
    ours = history(text, parent_env)
    assert engine_history(docker_client, text, "/bin/true")[-len(ours):] == ours
    assert len(ours) == 13  # the SHELL, then the seed's 12
