"""Errors a user can act on, and the exit codes a pipeline can trust."""
from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1  # some job or tag failed; the rest went through
EXIT_BAD_INPUT = 2  # bad input or configuration; nothing was done
EXIT_PARTIAL = 3  # done in part: `invoke update` bumped a version but kept its windows-sha256
EXIT_UNREACHABLE = 4  # a source or a registry a run needs did not answer (or is no listing)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it


class BuilderError(Exception):
    """A failure of the work itself (a build, a push, a registry refusing us)."""

    exit_code = EXIT_FAILED


class InputError(BuilderError):
    """Bad input: names the file, the line and the field, then what is wrong.

    Rendered as one line, ``versions.yaml:12: variants[2].from: what is wrong``,
    so an editor or CI log viewer can jump straight to it.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, source: str | Path | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class VerificationError(BuilderError):
    """A download that failed its check (a sha256, a signature, a key's fingerprint).

    One line naming the file and what was expected against what was found; the mirror is
    left as it was.
    """


class SourceUnreachable(BuilderError):
    """A release index or file that could not be fetched or read (a network error, an HTTP
    error, a page that is no listing): nothing was compared, so nothing is known to be stale,
    and a scheduled check can tell "the source is down" from "a newer release exists"."""

    exit_code = EXIT_UNREACHABLE


class HostUnreachable(BuilderError):
    """A registry a run needs (its --registry, its base mirror) does not answer before the run
    starts: nothing was built, and a pipeline can tell "a host is down" from "a job failed"."""

    exit_code = EXIT_UNREACHABLE


class PublishRefused(BuilderError):
    """A tag member this run cannot vouch for: the tag is not written, the others go on."""


class MovedMember(PublishRefused):
    """A per-arch tag this run pushed or verified now holds another image (or none): a
    concurrent release or a push changed it between build and publish."""


class StaleMember(PublishRefused):
    """A per-arch image this run did not build whose build hash is not the one the plan builds
    now (or cannot be computed): publishing it would list an image older than the tree."""


class AttestationError(BuilderError):
    """An image's attestations could not be made (its inventory unreadable), or a signature or
    attestation a `verify` expects is absent or does not verify: names the image or tag."""
