"""`library`: the official-images style library file of the versions file, on `out`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from builder.generate.library import last_commit, library_file
from builder.model.errors import EXIT_OK, InputError
from builder.model.report import Report, Status
from builder.model.versions import load
from builder.options import DEFAULT_VERSIONS


@dataclass(frozen=True)
class LibraryOptions:
    """`library`'s options."""
    versions: str = DEFAULT_VERSIONS
    commit: str | None = None  # GitCommit of every entry; default: git's last commit per directory


@dataclass(frozen=True)
class LibraryResult:
    text: str
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        report.stage("library", Status.OK, bytes=len(self.text.encode()))


def run(options: LibraryOptions, out: TextIO) -> LibraryResult:
    """The library file, printed on `out`."""
    family = load(options.versions)
    commit = options.commit
    if commit is not None and not (len(commit) == 40
                                   and all(c in "0123456789abcdef" for c in commit)):
        raise InputError(f"{commit!r} is not a full 40-digit lower-case commit id", field="--commit")
    repo = family.source.parent
    result = LibraryResult(library_file(
        family, lambda directory: commit or last_commit(repo, directory)))
    print(result.text, end="", file=out)
    return result
