"""Where the test bed keeps what outlives a test session (the same dirs scripts/setup uses)."""
from __future__ import annotations

from pathlib import Path


from builder.model.files import cache_dir  # noqa: F401  (the test bed's cache is the product's)


def run_dir() -> Path:
    """PID records of running test-bed servers (see procs.reap_orphans)."""
    path = cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path
