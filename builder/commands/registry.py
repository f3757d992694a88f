"""`registry`: a local registry on 127.0.0.1 to release to, started (or found running) so that
it outlives the command; `--stop` stops the one started from this directory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from builder.mirror import localregistry
from builder.model.errors import EXIT_OK
from builder.model.report import Report, Status
from builder.options import DEFAULT_REGISTRY_PORT


@dataclass(frozen=True)
class RegistryOptions:
    port: int = DEFAULT_REGISTRY_PORT
    stop: bool = False


@dataclass(frozen=True)
class RegistryResult:
    host: str | None  # 127.0.0.1:5000; None when stopped
    exit_code: int = EXIT_OK

    def add_to(self, report: Report) -> None:
        report.stage("registry", Status.OK, host=self.host)


def run(options: RegistryOptions, out: TextIO) -> RegistryResult:
    """Start or stop it; the local registry's messages go to stdout (the CLI points that at
    `out`)."""
    if options.stop:
        localregistry.stop()
        return RegistryResult(None)
    return RegistryResult(localregistry.start(options.port))

