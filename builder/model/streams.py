"""Where a command's output goes when nobody reads it.

Every command writes to the stream it is given (`run(options, out)`); a caller that wants it
silent (release running generate's check, --quiet, a test) passes `null()` instead of a
None that each command would have to test for.
"""
from __future__ import annotations

import io
from typing import TextIO


class _Null(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False


def null() -> TextIO:
    """A text stream that takes everything and keeps nothing."""
    return _Null()
