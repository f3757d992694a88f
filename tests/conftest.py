"""For every test: a session cleans up after a killed one and tears down on SIGTERM like on
Ctrl-C; each test is marked `unit` or `integration` by its folder (so `-m unit` selects like
`tests/unit` does); tiny_family_path is tests/fixtures/tiny/versions.yaml. The real parts are
fixtures of tests/integration/conftest.py, out of the unit tests' reach."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from testbed import modern, procs
from testbed.engine import reap_bridges, reap_trust
from tests.helpers.paths import TESTS, TINY_FAMILY


def pytest_sessionstart(session: pytest.Session) -> None:
    reaped = procs.reap_orphans() + reap_bridges() + reap_trust() + modern.reap()
    if reaped:
        print(f"\ntest bed: cleaned up after a killed session: {', '.join(reaped)}")
    # A SIGTERM (CI timeout, `kill`) should tear down like Ctrl-C: fixture finalizers, then atexit.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(TESTS).parts[0]
        if folder in ("unit", "integration"):
            item.add_marker(folder)


@pytest.fixture
def tiny_family_path() -> Path:
    return TINY_FAMILY
