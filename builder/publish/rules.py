"""The publish rules (pure): which per-arch image each member of a tag may be, and why not.

A member is a job key (``1.0.0/busybox/amd64``). Its image is taken from the registry only
when this run vouches for it:

- **verified**: the build stage of this run pushed it, or found it unchanged (same build hash);
  the registry must still hold exactly that digest, else the member *moved* under us (a
  concurrent release, a hand push) and the tag is refused;
- otherwise (no engine, a ``--platform`` filter, a failed job, a standalone ``invoke publish``)
  the image's build hash label must equal the hash the plan would build now, else it is
  *stale* and the tag is refused. A member built FROM another variant is current only when
  its parent is.

With ``--allow-lagging`` a member this run has no image for (its job failed, or its platform
was not in this run) *lags*: the tag keeps the member it lists now for that platform, and says
so (`lagging`). It never lists a member older than the one it replaces: a tag that holds a
newer version on some platform than this run would list there is refused.

`decide` gives every member its `Verdict`; `builder.publish.writer` is the edge that reads the
registry, and `builder.commands.publish` gives it the plan's hashes (`builder.plan.identity`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from builder.model.errors import BuilderError, InputError, MovedMember, PublishRefused, StaleMember
from builder.model.platforms import Platform
from builder.model.report import Status
from builder.model.versions import release_key


@dataclass(frozen=True)
class Verified:
    """A per-arch image this run's build stage pushed or found unchanged."""
    digest: str
    build_hash: str


@dataclass(frozen=True)
class Found:
    """What the registry holds at a member's per-arch reference now."""
    digest: str
    build_hash: str  # its build hash label; "" when it has none


@dataclass(frozen=True)
class Verdict:
    """A member's fate: its `digest` to list, or the `problem` that refuses its tags, or
    neither (absent from the registry)."""
    reference: str
    digest: str | None = None
    problem: PublishRefused | None = None

    @property
    def absent(self) -> bool:
        return self.digest is None and self.problem is None


HashNow = Callable[[str, str | None], str]  # (key, parent's digest) → the plan's build hash


class BuildOutcome(Protocol):
    """A build job's result as publish reads it (`builder.farm.results.JobResult`)."""
    key: str
    status: str
    digest: str | None
    build_hash: str | None


def decide(keys: Sequence[str], *, references: Mapping[str, str],
           found: Mapping[str, Found | None], verified: Mapping[str, Verified],
           parents: Mapping[str, str], hash_now: HashNow) -> dict[str, Verdict]:
    """A verdict for every key of `keys` and of their parents. `hash_now` raises BuilderError
    when the plan's hash cannot be computed (a base that cannot be pinned): such a member is
    stale too, since nothing shows it current."""
    verdicts: dict[str, Verdict] = {}

    def judge(key: str) -> Verdict:
        if key not in verdicts:
            verdicts[key] = _judge(key, references[key], found.get(key), verified.get(key),
                                   parents, judge, hash_now)
        return verdicts[key]

    for key in keys:
        judge(key)
    return verdicts


def _judge(key: str, reference: str, found: Found | None, verified: Verified | None,
           parents: Mapping[str, str], judge: Callable[[str], Verdict],
           hash_now: HashNow) -> Verdict:
    if verified is not None:
        if found is None:
            return Verdict(reference, problem=MovedMember(
                f"{reference} moved: this run pushed or verified {verified.digest} there, and "
                "the registry no longer holds that tag (deleted meanwhile); run the release again"))
        if found.digest != verified.digest:
            return Verdict(reference, problem=MovedMember(
                f"{reference} moved: this run pushed or verified {verified.digest} there, the "
                f"registry now holds {found.digest} (another release or a push wrote it "
                "meanwhile); run the release again"))
        return Verdict(reference, found.digest)
    if found is None:
        return Verdict(reference)
    parent_digest = None
    if key in parents:
        parent = judge(parents[key])
        if parent.digest is None:
            return Verdict(reference, problem=StaleMember(
                f"{reference} is stale: it builds FROM {parent.reference}, which is "
                f"{'absent' if parent.absent else 'not current'}; build both in this run"))
        parent_digest = parent.digest
    try:
        planned = hash_now(key, parent_digest)
    except BuilderError as error:
        return Verdict(reference, problem=StaleMember(
            f"{reference} cannot be shown current: the plan's build hash for it cannot be "
            f"computed here ({error}); build it in this run"))
    if found.build_hash != planned:
        had = found.build_hash or "no build hash label"
        return Verdict(reference, problem=StaleMember(
            f"{reference} is stale: it has {had}, the plan builds {planned} now (its Dockerfile, "
            f"context, build args or base changed since it was pushed); build it in this run: "
            f"a release that includes {_platform(key)}, on an engine that serves it"))
    return Verdict(reference, found.digest)


def _platform(key: str) -> str:
    return key.split("/")[2]


def vouches(status: str, digest: str | None, build_hash: str | None) -> bool:
    """Whether a build's job vouches for its image: pushed, or found unchanged, with its digest
    and build hash. A failed job, or one without a registry digest (no engine, a local
    build), vouches for nothing."""
    return status != Status.FAILED.value and bool(digest) and bool(build_hash)


def verified_builds(results: Iterable[BuildOutcome]) -> dict[str, Verified]:
    """The images this run's build stage vouches for (its jobs' results, as values): how a
    release hands its build over to publish."""
    return {r.key: Verified(r.digest, r.build_hash) for r in results
            if vouches(r.status, r.digest, r.build_hash)}


def verified_jobs(jobs: Sequence, source: str,
                  references: Mapping[str, str]) -> dict[str, Verified]:
    """The same values as `verified_builds`, of a build's report's ``jobs``, checked as the
    untrusted input they are. `references` ({key: per-arch reference}) is where publish reads
    each member: a job pushed elsewhere (another registry, another layout) is refused as bad
    input."""
    verified = {}
    for index, job in enumerate(jobs):
        where = f"jobs[{index}]"
        if not isinstance(job, Mapping):
            raise InputError("not a job object", source=source, field=where)
        for name in ("job", "status", "image", "digest", "build_hash"):
            value = job.get(name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{value!r} is not a string", source=source,
                                 field=f"{where}.{name}")
        if not job.get("job") or not job.get("status"):
            raise InputError("a job needs its key (job) and status", source=source, field=where)
        if not vouches(job["status"], job.get("digest"), job.get("build_hash")):
            continue
        if not job["digest"].startswith("sha256:"):
            raise InputError(f"{job['digest']!r} is not a sha256 digest", source=source,
                             field=f"{where}.digest")
        if job["job"] not in references:
            raise InputError(f"{job['job']} is no job of this version", source=source,
                             field=f"{where}.job")
        if job.get("image") != references[job["job"]]:
            raise InputError(f"{job['job']} was pushed to {job.get('image')}, publish reads "
                             f"{references[job['job']]}: the build was for another registry "
                             "or layout", source=source, field=f"{where}.image")
        verified[job["job"]] = Verified(job["digest"], job["build_hash"])
    return verified


def verified_from_report(document: object, source: str, version: str, registry: str,
                         references: Mapping[str, str]) -> dict[str, Verified]:
    """`verified_jobs` of a build's (or release's) JSON report, which must be of `version`
    and `registry`: how ``invoke publish --from-report`` takes over from ``invoke build``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("jobs"), list):
        raise InputError("not a build report (no jobs list)", source=source)
    for field, expected in (("version", version), ("registry", registry)):
        if document.get(field) != expected:
            raise InputError(f"{document.get(field)!r}, but this publish is of {expected!r}",
                             source=source, field=field)
    return verified_jobs(document["jobs"], source, references)


def merge_verified(reports: Sequence[tuple[str, Mapping[str, Verified]]]) -> dict[str, Verified]:
    """The images several builds vouch for, as one: each runner of a fanned-out build reports
    its platforms. `reports` are (source, its `verified_from_report`); one job vouched for with
    two different digests (two builds of it, or reports of different runs) is bad input that
    names the job and both reports: which image is the release's is not for publish to guess."""
    merged: dict[str, tuple[str, Verified]] = {}
    for source, verified in reports:
        for key, image in verified.items():
            earlier = merged.setdefault(key, (source, image))
            if earlier[1].digest != image.digest:
                raise InputError(
                    f"{key} is {earlier[1].digest} in {earlier[0]} and {image.digest} in "
                    f"{source}: two builds pushed it; give the reports of one run",
                    field="--from-report")
    return {key: image for key, (source, image) in merged.items()}


@dataclass(frozen=True)
class Listed:
    """A member of a tag's list as the registry holds it now."""
    platform: Platform  # as its list entry says (Windows: with its os.version)
    digest: str
    version: str | None  # its image's version (`versions.image_version`); None: not known


def lagging(version: str, members: Sequence[tuple[str, Platform]],
            verdicts: Mapping[str, Verdict], listed: Sequence[Listed]
            ) -> tuple[dict[str, Listed], PublishRefused | None]:
    """--allow-lagging, for one tag of `version` whose `members` are (key, platform): the ones
    that keep the tag's current member (`listed`) of their platform, and the problem that
    refuses the tag, if any. A member lags when this run has no image of it (its verdict is
    absent) and the tag lists its platform now; a member this run lists is refused where the
    tag lists a newer version on its platform now. A current member whose version is not
    known (`versions.image_version`) is taken as older than any."""
    def current(target: Platform) -> Listed | None:
        return next((entry for entry in listed if target.matches(
            entry.platform.os, entry.platform.architecture, entry.platform.variant,
            entry.platform.os_version)), None)

    kept, newer = {}, []
    for key, target in members:
        now = current(target)
        if now is None:
            continue
        if verdicts[key].absent:
            kept[key] = now
        elif now.version and _release(now.version) > _release(version):
            newer.append(f"{target.name} at {now.version}")
    if newer:
        return kept, PublishRefused(
            f"it lists {', '.join(newer)} now, newer than this run's {version}: a tag never goes "
            "back to an older member; release the newer version instead")
    return kept, None


def _release(version: str) -> tuple[int, ...]:
    try:
        return release_key(version)
    except ValueError:
        return ()
