"""Writing files so that no reader ever sees half of one, and where kept files live."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
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


# A temporary file's name: .<name>.<pid>.<random>.tmp, so that the next run can tell whose it is.
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[^.]+\.tmp")
_swept: set[Path] = set()
_swept_lock = threading.Lock()


def _sweep(directory: Path) -> None:
    """Remove the temporary files a killed process left in `directory` (SIGKILL runs no
    clean-up), once per directory and process; a live process's are left alone."""
    with _swept_lock:
        if directory in _swept:
            return
        _swept.add(directory)
    for entry in directory.iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                         suffix=".tmp")
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
