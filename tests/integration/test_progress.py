"""The local engine found as the build stage finds it: its native and emulated platforms."""
from __future__ import annotations

from builder.farm import engines


def test_the_local_engine_is_found_with_its_emulated_platforms(docker_client):
    local = engines.detect_local()
    names = {p.name for p in local.platforms}
    # The test bed registers QEMU handlers for these (scripts/setup).
    assert {"amd64", "arm32v7", "arm64v8", "ppc64le", "s390x"} <= names
    assert not any(p.os == "windows" for p in local.platforms)
