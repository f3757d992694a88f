"""Before a run: the registries it needs answer, or nothing is built.

A target registry or a base mirror where nothing listens would otherwise fail every job in
turn, each after the retry policy's backoff (minutes, and the same lines once per job). The
check is one request per host, with no retry and a short timeout, all hosts at once and at the
same time as the engines' probe (`builder.farm.runner.Runner.probe`); an answer of any status
is enough: what it says is for the run's own requests to word.
"""
from __future__ import annotations

from dataclasses import dataclass

from builder.model.errors import HostUnreachable
from builder.plan.plan import Plan

TIMEOUT = 8.0  # seconds for one host to answer: the whole check stays well within 15 s


@dataclass(frozen=True)
class Endpoint:
    """A registry host the run needs, and where the user set it."""
    role: str  # "registry" or "base mirror"
    host: str
    given_by: str  # the option or file that names it
    check: str  # what to do when it does not answer


def endpoints(plan: Plan, push: bool) -> list[Endpoint]:
    """The hosts `plan` reads from or pushes to that the user named: the per-arch images'
    registry (pushing only: a build that does not push never asks it) and the base mirror."""
    found = []
    if push:
        found += [Endpoint("registry", host, "--registry",
                           "check that it is up and that --registry names it")
                  for host in sorted({job.image.registry for job in plan.jobs})]
    if plan.builders.base_mirror and plan.jobs:
        found.append(Endpoint("base mirror", plan.builders.base_mirror,
                              "base-mirror in the builders file or BUILDER_BASE_MIRROR",
                              "start it (`invoke mirror`) or fix its address"))
    return found


def unreachable(problems: dict[Endpoint, str]) -> HostUnreachable:
    """One error for the hosts that did not answer, a sentence each: host, problem, the fix."""
    return HostUnreachable("; ".join(
        f"{e.role} {e.host} ({e.given_by}) does not answer: {why}; {e.check}"
        for e, why in problems.items()) + "; nothing was built")
