"""Credentials only for their own host, against the real engine and registries.

The CI pair (BUILDER_REGISTRY_USERNAME/_PASSWORD, no BUILDER_REGISTRY_HOST) belongs to the
--registry host. A stub registry on 127.0.0.2 (testbed.stubregistry: a real registry cannot
show us the headers it receives) asks for Basic auth as a base-image host and as a foreign
upload Location, and records every Authorization header: none may carry the secret, and the
secret shows in no output, log or report.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.model import builders as builders_file
from builder.farm import engineapi
from builder.farm import engines
from builder.model import naming
from builder.registry.credentials import Credentials
from builder.model.errors import BuilderError, InputError
from builder.model.platforms import platform
from builder.model.reference import ImageRef
from builder.plan.identity import context_tar
from builder.registry.client import RegistryClient, RegistryError
from builder.model.retry import Policy
from testbed.registry import start_registry
from testbed.stubregistry import StubRegistry
from tests.helpers.paths import ROOT, TINY


def ci_env(registry, tmp_path: Path) -> dict:
    """The CI pair for `registry`, nothing else: no BUILDER_REGISTRY_HOST, an empty Docker config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_REGISTRY_")}
    (tmp_path / "docker").mkdir(exist_ok=True)
    return {**env, "DOCKER_CONFIG": str(tmp_path / "docker"),
            "BUILDER_REGISTRY_USERNAME": registry.username,
            "BUILDER_REGISTRY_PASSWORD": registry.password}


def secret_forms(registry) -> list[str]:
    """The password as written, and as a Basic header carries it."""
    pair = f"{registry.username}:{registry.password}".encode()
    return [registry.password, base64.b64encode(pair).decode()]


def test_the_stub_records_credentials_it_is_given():
    """The recording the other tests rely on: a client that has credentials for it sends them."""
    with StubRegistry() as stub:
        digest = stub.add_image("base/tiny", "latest", {"hello": b"hi\n"})
        client = RegistryClient(stub.host, credentials=Credentials("u", "given", "test"))
        found = client.resolve_platform(ImageRef.parse(f"{stub.host}/base/tiny:latest"),
                                        platform("amd64"))
        assert found.digest == digest
        assert base64.b64encode(b"u:given").decode() in " ".join(stub.authorizations())


def test_a_base_image_host_asking_for_basic_auth_never_gets_the_ci_secret(
        tmp_path, tls_registry, mirror):
    """A FROM on a host that asks for Basic auth: our client pins the base there anonymously,
    and the engine, given no credentials for it, refuses to pull from it. Beside it a variant
    on the base mirror is built and pushed to --registry with the CI pair."""
    shutil.copytree(TINY / "templates", tmp_path / "templates")
    with StubRegistry(upstream=mirror.url) as stub:
        family = tmp_path / "versions.yaml"
        family.write_text("repository: tiny-scoped\ndefaults:\n  debian-suite: busybox\n"
                          "variants:\n"
                          "  busybox: {template: busybox, from: 'busybox:latest', platforms: [amd64]}\n"
                          f"  hostile: {{template: busybox, from: '{stub.host}/library/busybox:latest',"
                          " platforms: [amd64]}\n"
                          "versions:\n  - version: 1.0.0\n    variants: [busybox, hostile]\n")
        builders = tmp_path / "builders.yaml"
        builders.write_text(f"base-mirror: {mirror.host}\nengines:\n  - name: local\n"
                            "    url: unix:///var/run/docker.sock\n    platforms: [amd64]\n")
        done = subprocess.run(
            [str(Path(sys.executable).parent / "invoke"), "build", "--version", "1.0.0", "--push",
             "--registry", tls_registry.host, "--builders", str(builders), "--versions",
             str(family), "--logs", str(tmp_path / "logs"), "--report", str(tmp_path / "report.json")],
            cwd=ROOT, capture_output=True, text=True, env=ci_env(tls_registry, tmp_path),
            timeout=600)
        seen = list(stub.seen)

    assert done.returncode == 1, done.stdout + done.stderr
    jobs = {job["job"]: job for job in json.loads((tmp_path / "report.json").read_text())["jobs"]}
    assert jobs["1.0.0/busybox/amd64"]["pushed"] == [
        f"{tls_registry.host}/tiny-scoped:1.0.0-busybox-amd64"]  # the CI pair, on its own host
    assert jobs["1.0.0/hostile/amd64"]["status"] == "failed"
    assert "no basic auth credentials" in jobs["1.0.0/hostile/amd64"]["reason"]
    # Both asked the stub, and both were challenged: our client pinned the base (anonymously,
    # the stub serves manifests to anyone), the engine tried to pull it.
    assert any("/manifests/" in s.path and "python-requests" in s.user_agent for s in seen), seen
    assert any(s.path == "/v2/" and "docker/" in s.user_agent for s in seen), seen
    assert [s for s in seen if s.authorization] == []
    everything = done.stdout + done.stderr + (tmp_path / "report.json").read_text() + "".join(
        p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    for secret in secret_forms(tls_registry):
        assert secret not in everything


def test_a_build_request_carries_none_of_the_docker_config(tmp_path, monkeypatch, docker_client):
    """The SDK would send every entry of the Docker config with a build (X-Registry-Config)."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {"127.0.0.2:5999": {
        "auth": base64.b64encode(b"u:docker-config-secret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    engine = builders_file.Engine("local", "unix:///var/run/docker.sock", (platform("amd64"),))
    api = engines.connect(engine)
    sent = []
    api.hooks["response"].append(lambda response, **kwargs: sent.append(response.request))
    try:
        image = engineapi.build(api, engine, context_tar("FROM scratch\nLABEL scope=1\n"),
                                platform("amd64"), build_args={}, labels={}, nocache=True,
                                on_event=lambda event: None)
        api.remove_image(image)
    finally:
        api.close()

    builds = [request for request in sent if "/build" in request.url]
    assert builds and [r for r in builds if "X-Registry-Config" in r.headers] == []


def test_an_upload_location_on_another_host_gets_no_credentials(tmp_path, monkeypatch):
    """A real registry that hands out upload Locations on the stub's host (http.host): the
    POST to the registry carries the CI pair, the PUT to the Location none."""
    with StubRegistry() as stub:
        registry = start_registry(tmp_path / "registry", basic_auth=True, name="foreign-location",
                                  public_url=stub.url)
        try:
            for name, value in ci_env(registry, tmp_path).items():
                monkeypatch.setenv(name, value)
            monkeypatch.delenv("BUILDER_REGISTRY_HOST", raising=False)
            client = RegistryClient(registry.host, target=registry.host, policy=Policy(attempts=1))
            with pytest.raises(RegistryError) as failed:
                client.upload_blob("scoped/upload", b"a layer\n")
            seen = list(stub.seen)
        finally:
            registry.stop()

    assert [(s.method, s.authorization) for s in seen] == [("PUT", None)], seen
    assert seen[0].path.startswith("/v2/scoped/upload/blobs/uploads/")
    assert client.credentials() is not None  # the registry itself took them for the POST
    for secret in secret_forms(registry):
        assert secret not in str(failed.value)


@pytest.mark.parametrize("registry", ["ci:s3cret-pw@127.0.0.1:5000", "ci:s3cret-pw@127.0.0.1:5000/team",
                                      "https://ci:s3cret-pw@registry.example.com"])
def test_credentials_in_the_registry_name_are_refused_without_repeating_them(registry, tmp_path):
    with pytest.raises(InputError) as refused:
        naming.check_registry(registry)
    assert "s3cret-pw" not in str(refused.value)
    for command in (["build", "--version", "1.0.0", "--dry-run"],
                    ["release", "--version", "1.0.0", "--dry-run",
                     "--report", str(tmp_path / "report.json")],
                    ["publish", "--version", "1.0.0", "--dry-run"]):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "invoke"), *command, "--registry", registry,
             "--versions", str(ROOT / "tests" / "fixtures" / "tiny" / "versions.yaml")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stderr.startswith("error: --registry: credentials in the registry name are "
                                      "refused"), done.stderr
        assert "s3cret-pw" not in done.stdout + done.stderr
        assert not (tmp_path / "report.json").exists()


def test_a_plain_tcp_engine_is_used_only_with_tls_false_and_warned_about_once(tmp_path, capsys):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n  - name: lab\n    url: tcp://127.0.0.1:9\n    platforms: [amd64]\n"
                    "    tls: false\n")
    [engine] = builders_file.parse(path).engines
    assert engine.plain and engine.transport_problem is None
    for _ in range(2):
        with pytest.raises(BuilderError, match="is unreachable"):
            engines.connect(engine, timeout=2)  # nothing listens there
    assert capsys.readouterr().err.count("warning: engine lab (tcp://127.0.0.1:9) is reached "
                                         "without TLS") == 1
    refused = builders_file.Engine("lab", "tcp://127.0.0.1:9", engine.platforms)
    with pytest.raises(InputError, match="a tcp:// engine without TLS"):
        engines.connect(refused)


@pytest.mark.parametrize("tls, message", [
    ("", "engines[0].url: a tcp:// engine without TLS"),
    ("    tls: true\n", "engines[0].tls: expected {ca: …, cert: …, key: …}, or false"),
])
def test_a_builders_file_with_a_plain_tcp_engine_names_the_line(tmp_path, tls, message):
    path = tmp_path / "builders.yaml"
    path.write_text("engines:\n  - name: lab\n    url: tcp://10.0.0.7:2375\n"
                    f"    platforms: [amd64]\n{tls}")
    with pytest.raises(InputError) as refused:
        builders_file.parse(path)
    assert str(refused.value).startswith(f"{path}:{5 if tls else 3}: {message}")


def test_docker_host_over_tcp_needs_a_builders_file(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(InputError, match="DOCKER_HOST is tcp://127.0.0.1:9: a tcp:// engine is "
                                         "used only from a builders file"):
        engines.detect_local()
