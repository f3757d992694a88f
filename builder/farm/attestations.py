"""A job's attestations on its engine: the image's inventory, read once after its smoke tests
from a container of the image (network off, started only when the image has a Python), and
after the push its attestation manifest, made from the job's values (`builder.attest.image`)
and pushed beside the image.

The inventory is read before the push, CPython's own SBOM with it (from the job's tarball when
the image keeps none), so an image whose inventory cannot be read is not pushed: its tag would
otherwise list an image without the SBOM the release promises.
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
import tarfile
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable, Sequence

import requests
from docker.errors import DockerException

from builder.attest import image, inventory, push
from builder.attest.inventory import Inventory
from builder.attest.provenance import BuildFacts, Dependency
from builder.attest.sbom import Source
from builder.farm import containers
from builder.farm.engines import engine_version, short_error
from builder.model.errors import AttestationError
from builder.model.mirrors import PYTHON_ORG, Mirror
from builder.model.platforms import Platform
from builder.plan.dockerfile import rewrite_urls
from builder.plan.identity import Prepared
from builder.plan.plan import BuildJob
from builder.registry.client import RegistryClient

INVENTORY_TIMEOUT = 300  # seconds: dpkg's status file and importlib.metadata, under QEMU too
TARBALL_TIMEOUT = 120  # seconds for CPython's tarball (about 23 MB) from the job's mirror
# The inventory's engine calls in flight at once: on an engine reached over ssh, each one
# more is an ssh process of its own, so there it reads one file after another.
READERS = 4


def read_inventory(api, image_id: str, platform: Platform, log: Callable[[str], None], *,
                   readers: int = READERS) -> Inventory:
    """What the image holds, from the image itself: its files read through a container that
    is created, and started only to ask the image's Python (if it has one) what it holds.
    `readers`: the engine calls in flight at once (each file and each place a Python may be
    is a call of its own: one after another they made most of the inventory's time)."""
    try:
        # The pool is left before the container is removed: every read has ended by then.
        with containers.created(api, image_id, ["/bin/sh", "-c", inventory.PYTHON_SCRIPT],
                                platform) as container, \
                ThreadPoolExecutor(max_workers=readers,
                                   thread_name_prefix="inventory") as pool:
            env = pool.submit(api.inspect_container, container)
            reads = {name: [pool.submit(containers.read_file, api, container, path)
                            for path in paths] for name, paths in inventory.SOURCES.items()}
            python = _has_python(api, container, env.result()["Config"].get("Env") or [], pool)
            files = _first_found(reads)
            printed = _ask_python(api, container) if python else ""
    except (DockerException, requests.RequestException) as error:
        raise AttestationError(f"the image's inventory could not be read: "
                               f"{short_error(error)}; nothing was pushed") from None
    found = inventory.assemble(files, printed)
    log(f"inventory: {len(found.packages)} {found.manager or 'system'} packages, "
        f"{len(found.distributions)} Python distributions"
        + (f", Python {found.python}" if found.python else ""))
    return found


def _first_found(reads: dict[str, list[Future]]) -> dict[str, str]:
    """Each of the inventory's sources: the text of the first of its paths the image has."""
    found = {}
    for name, futures in reads.items():
        for future in futures:
            data = future.result()
            if data is not None:
                found[name] = data.decode("utf-8", "replace")
                break
    return found


def _has_python(api, container: str, env: list[str], pool: ThreadPoolExecutor) -> bool:
    """Whether a Python is on the container's PATH (its `env`), where its shell would find
    one."""
    stats = [pool.submit(containers.stat, api, container, path)
             for path in inventory.python_candidates(env)]
    return any(found is not None and inventory.runnable(found.get("mode", 0))
               for found in (stat.result() for stat in stats))


def _ask_python(api, container: str) -> str:
    """What the image's Python prints of itself (`inventory.PYTHON_SCRIPT`), stdout only."""
    code, output = containers.run(api, container, INVENTORY_TIMEOUT, stderr=False)
    if code != 0:
        raise AttestationError(f"the image's Python exited {code} listing its distributions; "
                               "nothing was pushed")
    return output


def source(job: BuildJob) -> Source | None:
    """The CPython tarball the job's Dockerfile fetches: none for an image that fetches none."""
    version = job.version
    if PYTHON_ORG not in job.dockerfile_text:
        return None
    return Source(version.full, f"{PYTHON_ORG}{version.release}/Python-{version.full}.tar.xz",
                  version.sha256)


def facts(api, job: BuildJob, prepared: Prepared, *, started: float, finished: float,
          engine: str, emulated: bool) -> BuildFacts:
    """The provenance's values of the job as it ran on `engine` (`api`)."""
    answer = engine_version(api)
    tarball = source(job)
    dependencies = [Dependency(base, base.rpartition("@sha256:")[2] or None)
                    for base in prepared.bases]
    if tarball:
        dependencies.append(Dependency(tarball.url, tarball.sha256))
    dependencies += [Dependency(m.url, upstream=m.upstream) for m in prepared.mirrors]
    version, revision = push.tool()
    return BuildFacts(
        job.version.full, job.variant.name, job.platform.oci,
        hashlib.sha256(prepared.dockerfile.encode()).hexdigest(), prepared.build_hash,
        tuple(dependencies), started, finished, engine, answer.get("Version", ""),
        answer.get("Arch", ""), emulated, version, revision)


def cpython_sbom(tarball: Source, mirrors: Sequence[Mirror]) -> dict | None:
    """CPython's own SBOM (Misc/sbom.spdx.json: expat, libmpdec, HACL*, …) from the tarball the
    build fetched, through the mirror that stood in for python.org; None where the release
    ships none (before 3.13). The download counts only when its sha256 is the pinned one."""
    url, _ = rewrite_urls(tarball.url, tuple(mirrors))
    return _sbom_of(url, tarball.sha256)


@functools.lru_cache(maxsize=4)  # every platform's job of a version reads the same tarball
def _sbom_of(url: str, sha256: str | None) -> dict | None:
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as kept:
        try:
            with requests.get(url, stream=True, timeout=TARBALL_TIMEOUT) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_content(1 << 20):
                    digest.update(chunk)
                    kept.write(chunk)
        except requests.RequestException as error:
            raise AttestationError(f"CPython's tarball for the SBOM: {url}: {error}") from None
        if sha256 and digest.hexdigest() != sha256:
            raise AttestationError(f"CPython's tarball for the SBOM: {url} has sha256 "
                                   f"{digest.hexdigest()}, not the pinned {sha256}")
        kept.seek(0)
        try:
            with tarfile.open(fileobj=kept, mode="r:*") as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith("/Misc/sbom.spdx.json"):
                        return json.load(archive.extractfile(member))
        except (tarfile.TarError, lzma.LZMAError, ValueError) as error:
            raise AttestationError(f"CPython's tarball for the SBOM: {url}: {error}") from None
    return None


def with_cpython_sbom(found: Inventory, job: BuildJob, mirrors: Sequence[Mirror]) -> Inventory:
    """`found`, with CPython's own SBOM from the tarball the job's build fetched when the image
    keeps none of its own."""
    tarball = source(job)
    if found.cpython_sbom is not None or tarball is None:
        return found
    try:
        return replace(found, cpython_sbom=cpython_sbom(tarball, mirrors))
    except AttestationError as error:
        raise AttestationError(f"{error}; nothing was pushed") from None


def attest(client: RegistryClient, job: BuildJob, digest: str, build: BuildFacts,
           found: Inventory | None) -> dict:
    """Make and push the image's attestation manifest; its index descriptor."""
    made = image.attestation(image.ImageFacts(str(job.image), digest, build, source(job),
                                              found))
    return push.push(client, job.image.repository, made)
