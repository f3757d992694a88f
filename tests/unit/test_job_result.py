"""A job's result is made in one place (`builder.farm.results.job_result`) from what its attempt
returned: the phases on every engine it was tried on, whether its last engine emulated its
platform, and its image's compressed size, as the report and its timeline read them.

Pure: the tiny family's plan and made-up attempts; no engine, no registry.
"""
from __future__ import annotations

from pathlib import Path

from builder.attest.image import WINDOWS_NO_SBOM
from builder.farm.results import Attempt, EngineRun, Failover, Phase, job_result
from builder.model import versions
from builder.model.builders import Builders, Engine
from builder.model.platforms import PLATFORMS
from builder.model.report import Status
from builder.plan.plan import plan
from tests.helpers.families import derived_family

DIGEST = "sha256:" + "c" * 64
T0 = 1_700_000_000.0


def amd64_job(tmp_path, tiny_family_path):
    family = versions.load(derived_family(tmp_path, tiny_family_path))
    builders = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),))
    return {job.key: job for job in plan(family, "1.0.0", builders=builders,
                                         registry="r:5000").members}["1.0.0/busybox/amd64"]


def test_a_failed_over_job_keeps_the_phases_of_both_engines(tmp_path, tiny_family_path):
    job = amd64_job(tmp_path, tiny_family_path)
    lost = (Phase("pull", "a", T0, T0 + 1), Phase("build", "a", T0 + 1, T0 + 5))
    here = (Phase("pull", "b", T0 + 6, T0 + 7), Phase("build", "b", T0 + 7, T0 + 9))
    run = EngineRun("b", T0 + 6, image_id="sha256:1", built=T0 + 9, finished=T0 + 10,
                    phases=here, emulated=True, compressed=1234)
    attempt = Attempt(Status.BUILT, run=run, failovers=(Failover("a", "gone", T0 + 5),),
                      earlier=lost)

    result = job_result(job, Path("x.log"), attempt, retries=0, interrupted=False, now=T0 + 11)

    assert [(p.name, p.engine) for p in result.phases] == \
        [("pull", "a"), ("build", "a"), ("pull", "b"), ("build", "b")]
    document = result.as_dict()
    assert document["emulated"] is True and document["compressed"] == 1234
    assert document["phases"][2] == {"phase": "pull", "engine": "b", "started": T0 + 6,
                                     "finished": T0 + 7}


def test_an_unchanged_job_has_the_registrys_size_and_no_phase(tmp_path, tiny_family_path):
    job = amd64_job(tmp_path, tiny_family_path)
    attempt = Attempt(Status.SKIPPED, "unchanged", digest=DIGEST, compressed=99)

    result = job_result(job, Path("x.log"), attempt, retries=0, interrupted=False, now=T0)

    assert (result.digest, result.compressed, result.phases, result.emulated) == \
        (DIGEST, 99, (), False)


def test_an_attested_windows_job_says_in_the_report_why_it_has_no_sbom(tmp_path, tiny_family_path):
    """The build stage attests a Windows image with the provenance alone; no Windows engine runs
    here, so the attempt is made by hand, as a Windows engine's would come back."""
    family = versions.load(derived_family(tmp_path, tiny_family_path))
    builders = Builders((Engine("local", "unix:///x", (PLATFORMS["amd64"],)),))
    jobs = {job.key: job for job in plan(family, "1.0.0", builders=builders,
                                         registry="r:5000").members}
    descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST}

    def result(key: str):
        run = EngineRun("e", T0, image_id="sha256:1", built=T0 + 1, finished=T0 + 2,
                        attestation=descriptor)
        return job_result(jobs[key], Path("x.log"), Attempt(Status.BUILT, run=run), retries=0,
                          interrupted=False, now=T0 + 2).as_dict()

    assert result("1.0.0/windowsservercore-1809/windows-amd64")["no_sbom"] == WINDOWS_NO_SBOM
    assert result("1.0.0/busybox/amd64")["no_sbom"] is None
