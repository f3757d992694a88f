"""Writing files so that no reader ever sees half of one, and where kept files live."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (str as UTF-8, or bytes) to a temporary file beside `path`, then rename it
    over `path`.

    The rename is atomic on one file system, so a crash or a failed run leaves
    either the old file or the new one, never a mix.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    _replace(path, lambda stream: stream.write(data))


def copy_atomic(source: Path, path: Path) -> None:
    """Copy the file `source` to `path` the way write_atomic writes: whole or not at all."""
    with source.open("rb") as reader:
        _replace(path, lambda stream: shutil.copyfileobj(reader, stream, 1 << 20))


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from other readers
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """What outlives one run and one checkout: the source mirror, base rootfs tarballs, the
    test bed's downloads. One per user and machine, so every clone shares it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    path = Path(base) / "python-image-builder"
    path.mkdir(parents=True, exist_ok=True)
    return path
