"""Before a run: the registries it needs (its target, the base mirror or the bases' own
registries) answer, or nothing is built.

A target registry or a base mirror where nothing listens would otherwise fail every job in
turn, each after the retry policy's backoff (minutes, and the same lines once per job). The
check is one request per host, with no retry and a short timeout, all hosts at once and at the
same time as the engines' probe (`builder.farm.runner.Runner.probe`); an answer of any status
is enough: what it says is for the run's own requests to word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from builder.model.errors import HostUnreachable
from builder.model.reference import DOCKER_HUB, ImageRef
from builder.plan.identity import bases
from builder.plan.plan import BuildJob, Plan

TIMEOUT = 8.0  # seconds for one host to answer: the whole check stays well within 15 s


@dataclass(frozen=True)
class Endpoint:
    """A registry host the run needs, where the user set it, and the jobs that need it."""
    role: str  # "registry" or "base mirror"
    host: str
    given_by: str  # the option or file that names it
    check: str  # what to do when it does not answer
    jobs: tuple[BuildJob, ...] = field(default=(), compare=False)


def endpoints(plan: Plan, push: bool, base_host: Callable[[ImageRef], str]) -> list[Endpoint]:
    """The hosts `plan` pushes to (pushing only: a build that does not push never asks its
    registry) and pins its bases from (`base_host`: the base mirror for Docker Hub's)."""
    pushed: dict[str, list[BuildJob]] = {}
    pinned: dict[str, list[BuildJob]] = {}
    for job in plan.jobs:
        if push:
            pushed.setdefault(job.image.registry, []).append(job)
        for image in bases(job):
            pinned.setdefault(base_host(ImageRef.parse(image)), []).append(job)
    found = [Endpoint("registry", host, "--registry",
                      "check that it is up and that --registry names it", tuple(jobs))
             for host, jobs in sorted(pushed.items())]
    for host, jobs in sorted(pinned.items()):
        if host == plan.builders.base_mirror:
            found.append(Endpoint("base mirror", host,
                                  "base-mirror in the builders file or BUILDER_BASE_MIRROR",
                                  "start it (`invoke mirror`) or fix its address", tuple(jobs)))
        elif host == DOCKER_HUB:
            found.append(Endpoint("registry", host, "the FROM of a base image",
                                  "set base-mirror in the builders file or BUILDER_BASE_MIRROR "
                                  "to a registry holding library/… images", tuple(jobs)))
        else:
            found.append(Endpoint("registry", host, "the FROM of a base image",
                                  "check that it is up and reachable from here", tuple(jobs)))
    return found


def unreachable(problems: dict[Endpoint, str]) -> HostUnreachable:
    """One error for the hosts that did not answer, a sentence each: host, problem, the fix."""
    return HostUnreachable("; ".join(
        f"{e.role} {e.host} ({e.given_by}) does not answer: {why}; {e.check}"
        for e, why in problems.items()) + "; nothing was built")
