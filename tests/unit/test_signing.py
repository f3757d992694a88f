"""Signing with cosign, against a stand-in cosign (a script on PATH that logs its arguments) and
a stand-in registry client: the digests are shared among cosign runs at once, a digest signed
before is skipped, a run that fails names itself, the release's early signing is not repeated,
and a release with a key it cannot use stops before it builds anything."""
from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import pytest

from builder.attest import signing
from builder.commands import verify
from builder.model.errors import AttestationError
from builder.model.reference import ImageRef
from tests.helpers.cli import invoke

NAME = "127.0.0.1:5000/hello"


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


class Client:
    """A plain-HTTP registry without credentials (what `signing.access` asks); head_manifest:
    a signature tag is there for the digests in `signed`."""
    registry, ca_bundle = "127.0.0.1:5000", None

    def __init__(self, signed=(), indexes=None):
        self.signed = {d.replace(":", "-") + ".sig" for d in signed}
        self.indexes = indexes or {}

    def plain_http(self):
        return True

    def credentials(self):
        return None

    def head_manifest(self, repository, reference):
        return object() if reference in self.signed else None

    def get_manifest(self, repository, digest):
        entries = self.indexes[digest]

        class Index:
            is_list = True
            json = {"manifests": [{"digest": d} for d in entries]}
        return Index()


@pytest.fixture
def cosign(tmp_path, monkeypatch):
    """A cosign that logs each run's arguments to runs.log (one line a run), fails when one of
    them ends in `dead` and hangs when one ends in `slow`: runs.log's path."""
    log = tmp_path / "runs.log"
    script = tmp_path / "bin" / "cosign"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in *dead*) echo "Error: signing {NAME}@dead: MANIFEST_UNKNOWN" >&2; exit 1;; esac
case "$*" in *slow*) exec sleep 60;; esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(signing.PASSWORD_VARIABLE, "")
    (tmp_path / "cosign.key").write_text("key")
    return log


def _runs(log: Path) -> list[list[str]]:
    return [[a for a in line.split() if "@" in a] for line in log.read_text().splitlines()]


def test_thirty_digests_are_signed_by_four_cosign_runs_at_once_skipping_the_signed(cosign):
    references = [(NAME, _digest(n)) for n in range(31)]
    with signing.start(Client(signed=[_digest(30)]), str(cosign.parent / "cosign.key"),
                       references) as running:
        assert len(running.running) == 4  # all started before any is waited for
        done = running.wait()
    assert sorted(done) == [f"{NAME}@{_digest(n)}" for n in range(30)]
    runs = _runs(cosign)
    assert sorted(len(r) for r in runs) == [7, 7, 8, 8]
    assert sorted(t for r in runs for t in r) == sorted(done)
    assert "--allow-http-registry" in cosign.read_text()


def test_a_failed_run_is_named_with_what_cosign_said(cosign):
    with pytest.raises(AttestationError, match=r"could not sign 1 of 1 digests \(.*@dead, …\): "
                                               r"Error: signing .*MANIFEST_UNKNOWN"):
        with signing.start(Client(), str(cosign.parent / "cosign.key"), [(NAME, "dead")]) as s:
            s.wait()


def test_runs_still_going_when_a_stage_fails_are_stopped(cosign):
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        with signing.start(Client(), str(cosign.parent / "cosign.key"), [(NAME, "slow")]) as s:
            process = s.running[0][1]
            raise RuntimeError("publish failed")
    assert process.poll() is not None and time.monotonic() - started < 10


def test_what_early_signing_has_is_not_signed_again_and_both_are_counted(cosign):
    key = str(cosign.parent / "cosign.key")
    images = [_digest(n) for n in range(4)]
    client = Client(indexes={_digest(100): images})
    early = signing.start(client, key, [(NAME, d) for d in images])
    out = io.StringIO()
    result = verify.sign_published(client, {f"{NAME}:1.0.0": _digest(100)}, key, out,
                                   early=early)
    assert sorted(result.signed) == sorted(f"{NAME}@{d}" for d in [*images, _digest(100)])
    assert sorted(len(r) for r in _runs(cosign)) == [1, 4]  # the index alone, the images once
    assert "signed 5 of 5 digests" in out.getvalue()


def test_sign_built_takes_the_images_in_the_tags_repository_and_their_attestations(cosign):
    class Result:
        def __init__(self, image, digest, attestation=None):
            self.image, self.digest, self.attestation = image, digest, attestation

    results = [Result(f"{NAME}:1.0.0-amd64", _digest(1), {"digest": _digest(2)}),
               Result("127.0.0.1:5000/amd64/hello:1.0.0", _digest(3)),  # --arch-namespace
               Result(f"{NAME}:1.0.0-i386", None)]  # failed: nothing pushed
    with verify.sign_built(Client(), results, ImageRef.parse(f"{NAME}:latest"),
                           str(cosign.parent / "cosign.key")) as early:
        assert sorted(early.wait()) == [f"{NAME}@{_digest(1)}", f"{NAME}@{_digest(2)}"]


def test_a_release_with_a_key_it_cannot_use_stops_before_building(tiny_family_path, tmp_path):
    done = invoke("release", "--version", "1.0.0", "--registry", "127.0.0.1:5999",
                  "--versions", str(tiny_family_path), "--attest",
                  "--sign-key", str(tmp_path / "nowhere.key"),
                  "--report", str(tmp_path / "report.json"))
    assert done.returncode == 2
    assert "no such file" in done.stderr and "nowhere.key" in done.stderr
    assert "build and push" not in done.stdout
