"""The OCI annotations of a tag's index and of its images' entries, as the official images
write them (pure): docker-library/meta-scripts' `build_annotations`, value for value.

On each image's entry: `source` (the Dockerfile's git URL, `<git-repo>#<commit>:<directory>`, a
reference `docker buildx build` takes), `revision` (that commit), `version`, `created` (the
image config's own), `url` (the image's page) and `base.name` / `base.digest` (the variant's
`from` and its manifest's digest for the platform). An annotation whose value is not known is
left out, as upstream leaves it out. On the index: the ones every image entry shares (a tag of
variants from two directories has no one `source`), and `created`, the newest image's.

Every value is the image's or the checkout's, never the moment of the run: an unchanged image
gets the same annotations again, so a no-op release writes the same index bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

PREFIX = "org.opencontainers.image."
SOURCE, REVISION, VERSION = PREFIX + "source", PREFIX + "revision", PREFIX + "version"
CREATED, URL = PREFIX + "created", PREFIX + "url"
BASE_NAME, BASE_DIGEST = PREFIX + "base.name", PREFIX + "base.digest"
# What a tag's index carries when its images agree on it; `created` is the newest of theirs.
WHOLE_TAG = (SOURCE, REVISION, VERSION, URL)


@dataclass(frozen=True)
class Origin:
    """Where one image comes from, as far as it is known; None: not known, not written."""
    version: str
    git_repo: str | None = None  # the versions file's `git-repo`
    commit: str | None = None  # the commit that last touched the Dockerfile's directory
    directory: str = ""  # that directory, from the top of the git checkout
    page: str | None = None  # the versions file's `image-url`
    base_name: str | None = None  # the variant's `from`, as written
    base_digest: str | None = None  # its manifest's digest for the image's platform


def source(git_repo: str, commit: str, directory: str) -> str:
    """`https://github.com/docker-library/python.git#<commit>:3.14/slim-trixie`."""
    return f"{git_repo}#{commit}:{directory}"


def image_annotations(origin: Origin, created: object) -> dict[str, str]:
    """An image entry's annotations, sorted by key; `created` is its config's (kept only when a
    string, as the config says it)."""
    found = {VERSION: origin.version, REVISION: origin.commit, URL: origin.page,
             BASE_NAME: origin.base_name, BASE_DIGEST: origin.base_digest,
             CREATED: created if isinstance(created, str) else None,
             SOURCE: source(origin.git_repo, origin.commit, origin.directory)
             if origin.git_repo and origin.commit else None}
    return {key: value for key, value in sorted(found.items()) if value}


def index_annotations(entries: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The index's annotations from its image entries' (`image_annotations`)."""
    entries = list(entries)
    found = {}
    for key in WHOLE_TAG:
        values = {entry.get(key) for entry in entries}
        if len(values) == 1 and None not in values:
            found[key] = values.pop()
    created = sorted(entry[CREATED] for entry in entries if entry.get(CREATED))
    if created:
        found[CREATED] = created[-1]
    return dict(sorted(found.items()))
