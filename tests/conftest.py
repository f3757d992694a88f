"""For every test: a session cleans up after a killed one and tears down on SIGTERM like on
Ctrl-C; tiny_family_path is tests/fixtures/tiny/versions.yaml. The real parts are fixtures of
tests/integration/conftest.py."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from testbed import procs
from testbed.engine import reap_bridges, reap_trust
from tests.helpers.paths import TINY_FAMILY


def pytest_sessionstart(session: pytest.Session) -> None:
    reaped = procs.reap_orphans() + reap_bridges() + reap_trust()
    if reaped:
        print(f"\ntest bed: cleaned up after a killed session: {', '.join(reaped)}")
    # A SIGTERM (CI timeout, `kill`) should tear down like Ctrl-C: fixture finalizers, then atexit.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def tiny_family_path() -> Path:
    return TINY_FAMILY
