"""Stage publish: the per-arch images of a version → one manifest list (or OCI index) per tag.

The build stage pushes every (variant, platform) image under the name ``naming.arch_reference``
gives; this stage finds them, reads each image's config for its platform fields, and writes,
for every tag and shared tag of the version, a list of exactly those images. The list's bytes
come from the pure core, `builder.publish.lists`.

- A tag lists only images this run vouches for (`builder.publish.rules`): the ones its build
  stage pushed or found unchanged, still at their digest; any other only when its build hash
  is the one the plan builds now. A moved or stale member refuses its tag, naming the member.
- A tag is never partial: its list is written only when every (variant, platform) it needs is
  present, unless ``allow_missing`` says to publish what exists (and the output says so). With
  ``--platform``, the lists hold those platforms and every other one already in the registry
  and current; an absent other one is left out.
- With ``allow_lagging`` a member this run has no image for keeps the tag's current member of
  its platform (upstream's lagging architectures), named in the output and the report; a tag
  that lists a newer version on some platform than this run would is refused.
- With arch namespaces (``amd64/python:3.8.0-buster``, like the official images) the images are
  first copied into the target repository, because a registry rejects a list whose entries
  live in another repository: blobs by cross-repository mount, then the manifest by digest.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from builder.model.errors import BuilderError, InputError, MovedMember, StaleMember
from builder.model.naming import arch_reference, check_registry, target_reference
from builder.model.platforms import Platform
from builder.model.reference import FOREIGN_LAYER_TYPES, ImageRef, Manifest, sha256_digest
from builder.model.report import Status
from builder.model.versions import Variant, Version, image_version
from builder.plan.identity import HASH_LABEL
from builder.publish.annotations import Origin
from builder.publish.attestations import attach
from builder.publish.lists import Member, TagResult, assemble
from builder.publish.rules import Found, HashNow, Listed, Verdict, Verified, decide, lagging
from builder.model import retry
from builder.registry.client import BadDocument, NotFound, RegistryClient

_WORKERS = 8


def registry_host(registry: str, repository: str) -> str:
    """The host of `registry` (which may carry a path: registry.example.com/team)."""
    check_registry(registry)  # its message, unlike the one below, does not repeat the value
    try:
        return target_reference(registry, repository, "latest").registry
    except InputError as error:
        raise InputError(f"--registry {registry!r}: {error.message}", field="registry") from None


@dataclass(frozen=True)
class _Found:
    member: Member | None
    repository: str = ""  # where the member's manifest is
    problem: str = ""  # why there is no member
    missing: bool = False  # the image is absent (as opposed to wrong)

    @property
    def found(self) -> Found | None:
        if self.member is None:
            return None
        labels = (self.member.config.get("config") or {}).get("Labels") or {}
        return Found(self.member.manifest.digest, labels.get(HASH_LABEL, ""))


def publish(client: RegistryClient, registry: str, repository: str, version: Version,
            groups: Mapping[str, Sequence[Variant]], *, hash_now: HashNow,
            parents: Mapping[str, str] | None = None,
            verified: Mapping[str, Verified] | None = None,
            optional: frozenset[str] = frozenset(), oci: bool = False,
            allow_missing: bool = False, allow_lagging: bool = False,
            arch_namespace_layout: bool = False, dry_run: bool = False,
            attestations: Mapping[str, Mapping] | None = None,
            origin: Callable[[str], Origin] | None = None) -> list[TagResult]:
    """Write the list of every tag in `groups` ({tag: variants}); one result per tag, in order.

    Members are job keys (``1.0.0/busybox/amd64``): `verified` holds this run's, `hash_now` gives
    the plan's build hash of any other, `parents` a member's parent key. A member of a platform
    in `optional` is left out of its lists when absent; with `allow_lagging` an absent member
    keeps the tag's current one of its platform. `attestations` ({image digest: descriptor},
    this run's): given, every tag is an OCI index listing its images' attestation manifests,
    each image's entry annotated with `origin(key)` (default: the version alone)."""
    parents = parents or {}
    wanted, pairs = _members(version, groups, parents)
    target = target_reference(registry, repository, "latest").repository
    refs = {key: arch_reference(registry, repository, version, variant, platform,
                                arch_namespace_layout=arch_namespace_layout)
            for key, (variant, platform) in pairs.items()}

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        found = dict(zip(pairs, pool.map(lambda key: _find(client, refs[key], pairs[key][1]),
                                         pairs)))
        verdicts = decide(wanted, references={key: str(ref) for key, ref in refs.items()},
                          found={key: f.found for key, f in found.items()},
                          verified=verified or {}, parents=parents, hash_now=hash_now)
        used = [found[key] for key in wanted if verdicts[key].digest]
        origin_of = _origins(origin, version, parents, verdicts)
        try:
            if not dry_run:
                _copy_in(client, pool, used, target)
        except BuilderError as error:  # no list can be written: every tag says why
            return [TagResult(tag, str(target_reference(registry, repository, tag)),
                              Status.FAILED, reason=f"{error}; the tag is left as it was")
                    for tag in groups]

        def decided(tag: str) -> TagResult | _Write:
            members = [(_key(version, variant, platform), platform) for variant in groups[tag]
                       for platform in variant.platforms]
            with retry.scope() as retried:
                result = _decide_tag(
                    client, target_reference(registry, repository, tag), members, found,
                    verdicts, optional=optional, oci=oci, allow_missing=allow_missing,
                    lagging_for=version.full if allow_lagging else None, dry_run=dry_run,
                    attestations=attestations, origin=origin_of)
            extra = {"retries": retried.retries, "members": tuple(key for key, _ in members)}
            if isinstance(result, _Write):
                return replace(result, result=replace(result.result, **extra))
            return replace(result, **extra)

        def unit(tags: Sequence[str]) -> list[TagResult]:
            return _write_unit(client, [decided(tag) for tag in tags])

        results = {r.tag: r for done in pool.map(unit, _units(groups)) for r in done}
        return [results[tag] for tag in groups]


def _origins(origin: Callable[[str], Origin] | None, version: Version,
             parents: Mapping[str, str], verdicts: Mapping[str, Verdict]
             ) -> Callable[[str], Origin]:
    """A member's origin (the version alone without `origin`); one built FROM this version's
    own image has that image for its base, at the digest its tags list."""
    def origin_of(key: str) -> Origin:
        made = origin(key) if origin else Origin(version.full)
        parent = verdicts[parents[key]].digest if key in parents else None
        return replace(made, base_digest=parent) if parent else made
    return origin_of


def _members(version: Version, groups: Mapping[str, Sequence[Variant]],
             parents: Mapping[str, str]) -> tuple[list[str], dict[str, tuple[Variant, Platform]]]:
    """The tags' member keys, and every key to read ({key: (variant, platform)}): the members
    and their parents, since a member's parent is judged with it."""
    pairs = {_key(version, variant, platform): (variant, platform)
             for variants in groups.values() for variant in variants
             for platform in variant.platforms}
    wanted = list(pairs)
    for key in wanted:
        while key in parents and parents[key] not in pairs:
            key = parents[key]
            pairs[key] = _pair(version, key)
    return wanted, pairs


def _units(groups: Mapping[str, Sequence[Variant]]) -> list[list[str]]:
    """The tags that list the same variants (a variant's tags), which move together."""
    units: dict[tuple[str, ...], list[str]] = {}
    for tag, variants in groups.items():
        units.setdefault(tuple(v.name for v in variants), []).append(tag)
    return list(units.values())


def _key(version: Version, variant: Variant, platform: Platform) -> str:
    """A member's name, the key of its build job: ``1.0.0/busybox/amd64``."""
    return f"{version.full}/{variant.name}/{platform.name}"


def _pair(version: Version, key: str) -> tuple[Variant, Platform]:
    _, variant_name, platform_name = key.split("/")
    variant = version.variant(variant_name)
    return variant, next(p for p in variant.platforms if p.name == platform_name)


def _find(client: RegistryClient, ref: ImageRef, platform: Platform) -> _Found:
    try:
        # The build stage read this image just now: only its digest is asked for again.
        manifest = client.resolve_platform(ref, platform, head_first=True)
        config = client.get_config(ref.repository, manifest)
    except NotFound:
        return _Found(None, problem=str(ref), missing=True)
    except BadDocument as error:  # unreadable: the tags it is in say so, the others go on
        return _Found(None, problem=str(error))
    member = Member(manifest, config)
    try:
        found_platform = member.platform
    except BuilderError as error:
        return _Found(None, problem=f"{ref}: {error}")
    if not platform.matches(found_platform.os, found_platform.architecture,
                            found_platform.variant, found_platform.os_version):
        return _Found(None, problem=f"{ref} is {member.label}, not {platform.oci}"
                                    f"{' ' + platform.os_version if platform.os_version else ''}")
    return _Found(member, ref.repository)


def _copy_in(client: RegistryClient, pool: ThreadPoolExecutor, found: Sequence[_Found],
             target: str) -> None:
    """Make every member from another repository exist in `target`: mount its blobs, then PUT
    its manifest by digest. Each blob is mounted once: Distribution's filesystem storage
    answers DIGEST_INVALID when two mounts of one blob into one repository race."""
    foreign = {f.member.manifest.digest: f for f in found if f.repository != target}
    heads = pool.map(lambda digest: client.head_manifest(target, digest), foreign)
    absent = [f for f, head in zip(foreign.values(), heads) if head is None]
    blobs: dict[str, str] = {}
    for f in absent:
        document = f.member.manifest.json
        for blob in [document["config"]] + document.get("layers", []):
            if blob.get("mediaType") not in FOREIGN_LAYER_TYPES:
                blobs.setdefault(blob["digest"], f.repository)
    mounted = pool.map(lambda item: client.mount_blob(target, *item), blobs.items())
    refused = [f"{digest} from {source}" for (digest, source), ok in zip(blobs.items(), mounted)
               if not ok]
    if refused:
        raise BuilderError(f"registry {client.registry} would not mount {', '.join(refused[:3])} "
                           f"into {target}; push those per-arch images again")
    list(pool.map(lambda f: client.put_manifest(target, f.member.manifest.digest,
                                                f.member.manifest.body,
                                                f.member.manifest.media_type), absent))


def _decide_tag(client: RegistryClient, ref: ImageRef, wanted: Sequence[tuple[str, Platform]],
                found: Mapping[str, _Found], verdicts: Mapping[str, Verdict], *,
                optional: frozenset[str], oci: bool, allow_missing: bool,
                lagging_for: str | None, dry_run: bool,
                attestations: Mapping[str, Mapping] | None,
                origin: Callable[[str], Origin]) -> TagResult | _Write:
    """The tag's result, or the write that makes it. `lagging_for`: the version this run
    publishes, when lagging members may be kept."""
    keys = [key for key, _ in wanted]
    wrong = [found[key].problem for key in keys
             if found[key].member is None and not found[key].missing]
    judged = [verdicts[key] for key in keys]
    refused = [v.problem for v in judged if v.problem]
    stale = tuple(v.reference for v in judged if isinstance(v.problem, StaleMember))
    moved = tuple(v.reference for v in judged if isinstance(v.problem, MovedMember))
    members = [found[key].member for key, v in zip(keys, judged) if v.digest]
    kept: dict[str, tuple[Listed, Member]] = {}
    if not wrong and not refused and lagging_for:
        try:
            listed = _listed(client, ref)
        except BuilderError as error:
            return TagResult(ref.tag, str(ref), Status.FAILED,
                             reason=f"{error}; the tag is left as it was")
        keep, problem = lagging(lagging_for, wanted, verdicts, list(listed))
        if problem:
            refused.append(problem)
        kept = {key: (entry, listed[entry]) for key, entry in keep.items()}
        members += [member for _, member in kept.values()]
    # An optional member (a platform --platform did not ask for) that is absent is left out.
    missing = tuple(v.reference for key, v in zip(keys, judged)
                    if v.absent and key not in kept and key.rsplit("/", 1)[1] not in optional)
    if wrong:
        return TagResult(ref.tag, str(ref), Status.FAILED, missing=missing,
                         reason="; ".join(wrong) + "; the tag is left as it was")
    if refused:
        return TagResult(ref.tag, str(ref), Status.FAILED, missing=missing, stale=stale,
                         moved=moved, reason="; ".join(str(p) for p in refused)
                         + "; the tag is left as it was")
    if missing and (not allow_missing or not members):
        return TagResult(ref.tag, str(ref), Status.FAILED, missing=missing,
                         reason=f"missing {', '.join(missing)}; the tag is left as it was "
                                "(push them, or pass --allow-missing to publish the rest)")
    behind = tuple(f"{member.label} at {entry.version or 'an unknown version'}"
                   for entry, member in kept.values())
    # A lagging member is not this run's: it keeps what the tag's index says of it.
    origins = {found[key].member.manifest.digest: origin(key) for key, v in zip(keys, judged)
               if v.digest} if attestations is not None else {}
    return _write_tag(client, ref, members, missing, behind, oci=oci, dry_run=dry_run,
                      attestations=attestations, origins=origins)


def _listed(client: RegistryClient, ref: ImageRef) -> dict[Listed, Member]:
    """The members the tag lists now, each with its version; none when the tag is absent."""
    try:
        top = client.get_manifest(ref.repository, ref.tag)
    except NotFound:
        return {}
    manifests = [client.get_manifest(ref.repository, entry["digest"])
                 for entry in top.json.get("manifests", [])] if top.is_list else [top]
    listed = {}
    for manifest in manifests:
        member = Member(manifest, client.get_config(ref.repository, manifest))
        try:
            listed[Listed(member.platform, manifest.digest,
                          image_version(member.config, ref.repository))] = member
        except BuilderError:
            continue  # a platform outside the table: nothing of this run can lag onto it
    return listed


@dataclass(frozen=True)
class _Write:
    """A tag's list to PUT: what it becomes once written, and what it was (to roll back to)."""
    result: TagResult
    body: bytes
    previous: Manifest | None  # None: the tag did not exist


def _write_tag(client: RegistryClient, ref: ImageRef, members: list[Member],
               missing: tuple[str, ...], behind: tuple[str, ...], *, oci: bool,
               dry_run: bool, attestations: Mapping[str, Mapping] | None = None,
               origins: Mapping[str, Origin] | None = None) -> TagResult | _Write:
    try:
        body, media_type = assemble(members, oci=oci)
        # The body by tag, hashed here: a HEAD's digest alone (a stale cache's) never
        # skips a write, and the body is what a roll-back puts back.
        previous = client.get_manifest(ref.repository, ref.tag)
    except NotFound:
        previous = None
    except BuilderError as error:
        return TagResult(ref.tag, str(ref), Status.FAILED,
                         reason=f"{error}; the tag is left as it was")
    if attestations is not None:
        body, media_type = attach(client, ref.repository, body, media_type, members, previous,
                                  attestations, origins or {})
    digest = sha256_digest(body)
    labels = tuple(m.label for m in sorted(members, key=lambda m: m.platform.sort_key()))
    result = TagResult(ref.tag, str(ref), Status.UNCHANGED, digest, media_type, labels, missing,
                       lagging=behind)
    if previous and previous.digest == digest:
        client.remember(ref.repository, Manifest(media_type, digest, body))  # the pages read it
        return result
    if dry_run:
        return replace(result, status=Status.PLANNED)
    return _Write(replace(result, status=Status.WRITTEN), body, previous)


def _write_unit(client: RegistryClient, decided: Sequence[TagResult | _Write]) -> list[TagResult]:
    """Write the lists of one variant's tags, in order, as one: when a write fails, the tags
    already moved go back to their previous list; a tag that cannot go back is named, with
    the tags it is apart from, so a re-run (which finds it unchanged) joins them again."""
    writes = [d for d in decided if isinstance(d, _Write)]
    done: dict[str, TagResult] = {d.tag: d for d in decided if isinstance(d, TagResult)}
    failure: tuple[str, BuilderError] | None = None
    moved: list[_Write] = []
    for write in writes:
        result = write.result
        if failure:
            done[result.tag] = replace(result, status=Status.KEPT, reason=(
                f"not written, so that the tags of its variant stay together: {failure[0]} "
                f"failed ({failure[1]})"))
            continue
        try:
            with retry.scope() as retried:
                client.put_manifest(_ref(result), result.tag, write.body, result.media_type)
        except BuilderError as error:
            failure = (result.tag, error)
            done[result.tag] = replace(result, status=Status.FAILED,
                                       reason=f"{error}; the tag is left as it was")
            continue
        moved.append(write)
        done[result.tag] = replace(result, retries=result.retries + retried.retries)
    if failure:
        done.update(_roll_back(client, moved, failure, [w.result.tag for w in writes]))
    return [done[d.tag if isinstance(d, TagResult) else d.result.tag] for d in decided]


def _roll_back(client: RegistryClient, moved: Sequence[_Write], failure: tuple[str, BuilderError],
               tags: Sequence[str]) -> dict[str, TagResult]:
    """The tags written before `failure`, each put back to its previous list where it can be."""
    back, split = {}, []
    for write in moved:
        result = write.result
        cause = f"{failure[0]} failed ({failure[1]})"
        if write.previous is not None:
            try:
                client.put_manifest(_ref(result), result.tag, write.previous.body,
                                    write.previous.media_type, restore=True)
                back[result.tag] = replace(result, status=Status.KEPT, reason=(
                    f"written, then rolled back to its previous list {write.previous.digest} "
                    f"because {cause}"))
                continue
            except BuilderError as error:
                cause += f"; rolling it back failed too ({error})"
        split.append((write, cause))
    stayed = [tag for tag in tags if tag not in {w.result.tag for w, _ in split}]
    for write, cause in split:
        back[write.result.tag] = replace(write.result, split_from=tuple(stayed), reason=(
            f"MOVED ALONE: written, while {', '.join(stayed)} kept their old list, because "
            f"{cause}; run again to move them too"))
    return back


def _ref(result: TagResult) -> str:
    """The repository of a tag result's reference."""
    return ImageRef.parse(result.reference).repository
