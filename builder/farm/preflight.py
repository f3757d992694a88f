"""Before a run: the registries it needs (its target, the base mirror or the bases' own
registries) answer, or nothing is built.

A target registry or a base mirror where nothing listens would otherwise fail every job in
turn, each after the retry policy's backoff (minutes, and the same lines once per job). The
check is one request per host, with no retry and a short timeout, all hosts at once and at the
same time as the engines' probe (`builder.farm.runner.Runner.probe`); an answer of any status
is enough: what it says is for the run's own requests to word.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from builder.model.errors import HostUnreachable
from builder.model.reference import DOCKER_HUB, ImageRef
from builder.plan.identity import bases
from builder.plan.plan import Plan

TIMEOUT = 8.0  # seconds for one host to answer: the whole check stays well within 15 s


@dataclass(frozen=True)
class Endpoint:
    """A registry host the run needs, and where the user set it."""
    role: str  # "registry" or "base mirror"
    host: str
    given_by: str  # the option or file that names it
    check: str  # what to do when it does not answer


def endpoints(plan: Plan, push: bool, base_host: Callable[[ImageRef], str]) -> list[Endpoint]:
    """The hosts `plan` pushes to (pushing only: a build that does not push never asks its
    registry) and pins its bases from (`base_host`: the base mirror for Docker Hub's)."""
    found = []
    if push:
        found += [Endpoint("registry", host, "--registry",
                           "check that it is up and that --registry names it")
                  for host in sorted({job.image.registry for job in plan.jobs})]
    mirror = plan.builders.base_mirror
    for host in sorted({base_host(ImageRef.parse(image)) for job in plan.jobs
                        for image in bases(job)}):
        if host == mirror:
            found.append(Endpoint("base mirror", host,
                                  "base-mirror in the builders file or BUILDER_BASE_MIRROR",
                                  "start it (`invoke mirror`) or fix its address"))
        elif host == DOCKER_HUB:
            found.append(Endpoint("registry", host, "the FROM of a base image",
                                  "set base-mirror in the builders file or BUILDER_BASE_MIRROR "
                                  "to a registry holding library/… images"))
        else:
            found.append(Endpoint("registry", host, "the FROM of a base image",
                                  "check that it is up and reachable from here"))
    return found


def unreachable(problems: dict[Endpoint, str]) -> HostUnreachable:
    """One error for the hosts that did not answer, a sentence each: host, problem, the fix."""
    return HostUnreachable("; ".join(
        f"{e.role} {e.host} ({e.given_by}) does not answer: {why}; {e.check}"
        for e, why in problems.items()) + "; nothing was built")
