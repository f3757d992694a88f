"""Remote engines: the build stage reaches an engine over tcp:// with TLS and over ssh://.

Both are the test bed's second engine (conftest): `tls_engine` is its TLS listener on
127.0.0.1, `ssh_engine` a private sshd whose sessions run `docker system dial-stdio` against it.
Each test builds under its own repository name and without the build cache (an earlier test
may have built the same Dockerfile there, and the local engine may have pulled that image), so
that the image found on the second engine, and not on the local one, is this test's build.
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import docker.errors
import pytest

from builder.farm import runner as build
from builder.registry.client import RegistryClient
from tests.helpers.cli import invoke

PLATFORM = "arm64v8"  # one tiny foreign platform: the second engine builds it under QEMU
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def family(tmp_path: Path, tiny_family_path: Path, repository: str) -> Path:
    """The tiny family under another repository name."""
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    path = tmp_path / "versions.yaml"
    path.write_text(tiny_family_path.read_text().replace("repository: tiny\n",
                                                         f"repository: {repository}\n"))
    return path


def builders_file(path: Path, mirror_host: str, name: str, url: str,
                  tls: dict | str | None = None) -> Path:
    lines = [f"base-mirror: {mirror_host}", "engines:", f"  - name: {name}", f"    url: {url}",
             f"    platforms: [{PLATFORM}]"]
    if tls == "false":
        lines.append("    tls: false")
    elif tls:
        lines.append("    tls: {" + ", ".join(f"{k}: {v}" for k, v in tls.items()) + "}")
    path.write_text("\n".join(lines) + "\n")
    return path


def tls_files(tls_engine) -> dict:
    return {"ca": tls_engine.ca, "cert": tls_engine.cert, "key": tls_engine.key}


def assert_built_on_second_engine(run, engine_name, registry, second_engine, docker_client):
    assert run.exit_code == 0, [r.reason for r in run.failures]
    [result] = run.results
    assert (result.status, result.engine, result.platform) == ("built", engine_name, PLATFORM)
    job = result.pushed.job
    on_second = second_engine.client.images.get(result.image_id)
    assert str(job.image) in on_second.tags
    assert on_second.attrs["Architecture"] == "arm64"
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(result.image_id)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(str(job.image))
    manifest = RegistryClient(registry.host).get_manifest(job.image.repository, job.image.tag)
    assert manifest.digest == result.digest


def test_a_tls_engine_builds_and_pushes_its_platform(tmp_path, monkeypatch, registry, mirror,
                                                     tls_engine, second_engine, docker_client,
                                                     tiny_family_path):
    # A CA bundle in the environment (as on many CI machines) must not replace the engine's CA:
    # requests lets REQUESTS_CA_BUNDLE override the CA the docker SDK sets on its session.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_CAS)
    builders = builders_file(tmp_path / "builders.yaml", mirror.host, "tls-node", tls_engine.url,
                             tls_files(tls_engine))

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox",), platforms=(PLATFORM,),
        registry=registry.host, push=True, builders=str(builders), nocache=True,
        versions=str(family(tmp_path, tiny_family_path, "tiny-tls")),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    assert_built_on_second_engine(run, "tls-node", registry, second_engine, docker_client)


def test_tls_paths_are_relative_to_the_builders_file(tmp_path, mirror, tls_engine,
                                                     tiny_family_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, source in tls_files(tls_engine).items():
        shutil.copyfile(source, certs / f"{name}.pem")
    builders = builders_file(tmp_path / "builders.yaml", mirror.host, "tls-node", tls_engine.url,
                             {k: f"certs/{k}.pem" for k in ("ca", "cert", "key")})

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox",), platforms=(PLATFORM,),
        builders=str(builders),
        versions=str(family(tmp_path, tiny_family_path, "tiny-tls-relative")),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    assert run.exit_code == 0, [r.reason for r in run.failures]
    assert [(r.status, r.engine) for r in run.results] == [("built", "tls-node")]


def failed_lines(done) -> list[str]:
    """The jobs not built: an engine that fails its probe is left out, its jobs skipped."""
    assert "Traceback" not in done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]


@pytest.mark.parametrize("case", ["wrong client certificate", "no client certificate",
                                  "tls: false", "wrong ca"])
def test_a_tls_misconfiguration_fails_the_job_with_one_line_that_says_what_to_fix(
        case, tmp_path, mirror, tls_engine, tiny_family_path):
    from testbed.pki import make_client_cert, make_server_pki
    other = make_server_pki(tmp_path / "other-ca", common_name="another CA")
    stranger = make_client_cert(other, tmp_path / "other-ca", common_name="stranger")
    tls = {"wrong client certificate": {"ca": tls_engine.ca, "cert": stranger.cert,
                                        "key": stranger.key},
           "no client certificate": {"ca": tls_engine.ca},
           "tls: false": "false",
           "wrong ca": {"ca": other.ca_cert, "cert": tls_engine.cert, "key": tls_engine.key}}[case]
    builders = builders_file(tmp_path / "builders.yaml", mirror.host, "tls-node", tls_engine.url, tls)

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", PLATFORM,
                  "--builders", str(builders), "--versions", str(tiny_family_path),
                  "--logs", str(tmp_path / "logs"))

    assert done.returncode == 1, done.stderr
    [line] = failed_lines(done)
    where = (f"skipped: 1.0.0/busybox/{PLATFORM}: no healthy engine for {PLATFORM}: "
             f"engine tls-node ({tls_engine.url})")
    expected = {
        "wrong client certificate": (f"{where} refused the TLS handshake with the client "
                                     f"certificate {stranger.cert} ("),
        "no client certificate": (f"{where} refused the TLS handshake with no client certificate "
                                  "(tls.cert and tls.key are not set)"),
        "tls: false": (f"{where} speaks TLS, and its entry in the builders file says "
                       "`tls: false`; give tls: {ca: …, cert: …, key: …} instead"),
        "wrong ca": f"{where}: its certificate is not signed by tls.ca ({other.ca_cert})",
    }[case]
    assert line.startswith(expected), line
    if case.endswith("client certificate"):
        assert line.endswith("; set tls.cert and tls.key to such a pair"), line
    if case == "wrong ca":
        assert line.endswith("; set tls.ca to the CA that signed the engine's certificate"), line
    if case == "tls: false":  # allowed, as the file says, and said once
        assert done.stderr.count(f"warning: engine tls-node ({tls_engine.url}) is reached "
                                 "without TLS (`tls: false` in the builders file)") == 1, done.stderr


def test_a_tcp_engine_without_tls_is_refused_naming_the_line(tmp_path, tiny_family_path):
    builders = builders_file(tmp_path / "builders.yaml", "127.0.0.1:9", "tls-node",
                             "tcp://127.0.0.1:9")

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", PLATFORM,
                  "--builders", str(builders), "--versions", str(tiny_family_path),
                  "--logs", str(tmp_path / "logs"))

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {builders}:4: engines[0].url: a tcp:// engine without "
                                  "TLS lets anyone who reaches its port run containers"), done.stderr
    assert "or `tls: false` to accept that" in done.stderr and not (tmp_path / "logs").exists()


def test_an_ssh_engine_builds_and_pushes_its_platform(tmp_path, monkeypatch, registry, mirror,
                                                      ssh_engine, second_engine, docker_client,
                                                      tiny_family_path):
    # The docker SDK runs `ssh -l root -p PORT -- 127.0.0.1 docker system dial-stdio`: the key
    # and the known host come from the ssh configuration, here the test bed's (see testbed.sshd).
    monkeypatch.setenv("PATH", f"{ssh_engine.path_dir}{os.pathsep}{os.environ['PATH']}")
    builders = builders_file(tmp_path / "builders.yaml", mirror.host, "ssh-node", ssh_engine.url)

    run = build.run(build.BuildOptions(
        "1.0.0", variants=("busybox",), platforms=(PLATFORM,),
        registry=registry.host, push=True, builders=str(builders), nocache=True,
        versions=str(family(tmp_path, tiny_family_path, "tiny-ssh")),
        logs=str(tmp_path / "logs")), out=io.StringIO())

    assert_built_on_second_engine(run, "ssh-node", registry, second_engine, docker_client)


@pytest.mark.parametrize("case", ["unknown host key", "no key"])
def test_an_ssh_engine_that_ssh_cannot_log_in_to_fails_the_job_with_one_line(
        case, tmp_path, mirror, ssh_engine, tiny_family_path):
    # Not the test bed's ssh configuration, but one without our key (and, in the first case,
    # without the host key either); BatchMode, so that nothing prompts.
    known_hosts = tmp_path / "known_hosts" if case == "unknown host key" else ssh_engine.known_hosts
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  BatchMode yes\n  StrictHostKeyChecking yes\n"
                      f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                      "  IdentityFile /dev/null\n  IdentitiesOnly yes\n  IdentityAgent none\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F {config} \"$@\"\n")
    (bin_dir / "ssh").chmod(0o755)
    builders = builders_file(tmp_path / "builders.yaml", mirror.host, "ssh-node", ssh_engine.url)

    done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", PLATFORM,
                  "--builders", str(builders), "--versions", str(tiny_family_path),
                  "--logs", str(tmp_path / "logs"),
                  env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})

    assert done.returncode == 1, done.stderr
    [line] = failed_lines(done)
    assert line.startswith(f"skipped: 1.0.0/busybox/{PLATFORM}: no healthy engine for {PLATFORM}: "
                           f"engine ssh-node ({ssh_engine.url}): no docker API over ssh ("), line
    assert (f"`ssh -l root -p {ssh_engine.port} 127.0.0.1 docker version` must work without a "
            "prompt: the key in ssh-agent or ~/.ssh/config") in line
    # The ssh command's own reason reaches stderr as it is.
    assert ("Host key verification failed." if case == "unknown host key"
            else "Permission denied (publickey)") in done.stderr
