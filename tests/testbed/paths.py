"""Where the test bed keeps what outlives a test session (the same dirs scripts/setup uses)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Downloads, base-image tarballs and the mirror's storage: kept across sessions."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    path = Path(base) / "python-image-builder"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """PID records of running test-bed servers (see procs.reap_orphans)."""
    path = cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path
