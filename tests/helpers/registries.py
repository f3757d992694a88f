"""Talking to a test-bed registry as the CI would: its credentials, a client, a run's report."""
from __future__ import annotations

import json
from pathlib import Path

from builder.registry import credentials as auth
from builder.registry.client import RegistryClient
from builder.registry.credentials import Credentials


def credentials_env(registry) -> dict[str, str]:
    """The environment variables a CI sets for `registry`'s account."""
    prefix = auth.env_prefix(registry.host)
    return {f"{prefix}_USERNAME": registry.username, f"{prefix}_PASSWORD": registry.password}


def client_for(registry) -> RegistryClient:
    """A client of the TLS registry, logged in, trusting its CA."""
    return RegistryClient(registry.host, credentials=Credentials(registry.username, registry.password),
                          ca_bundle=str(registry.ca_bundle))


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())
