"""The real parts the integration tests run against: registries, the local and more Docker engines,
base images, fault proxies. Unit tests (tests/unit/) cannot ask for them: these fixtures live here.

Interface (other test modules code against it):
- registry: plain Distribution; .host "127.0.0.1:PORT", .url "http://…".
- tls_registry: htpasswd Basic auth over TLS; .host, .url "https://…", .username, .password,
  .ca_bundle (CA PEM; also installed as /etc/docker/certs.d/<host>/ca.crt for both engines).
- mirror: stands in for Docker Hub: <host>/library/busybox:latest (manifest list, per-arch tags
  library/busybox:<platform name>) and <host>/library/debian:trixie (amd64; builder.commands.bases makes it).
- docker_client: the local engine; second_engine: .url (docker base_url), .client; third_engine:
  another such dockerd (unix socket only), for pools of engines.
- modern_engine: Docker 28.5 with the containerd image store and buildx (testbed/modern.py): .url
  (unix socket), .tcp_url "tcp://127.0.0.1:PORT" (no TLS), .client; a host registry's
  127.0.0.1:PORT is the same address inside it.
- build_engine: the engine a build-path test runs on, once per engine kind (module scope, ids
  and markers `classic` and `modern`): a tests.helpers.builders.KindEngine, .kind, .name, .url,
  .client, .spec(*platforms) for write_builders (without the platforms it builds wrongly).
  kind_registry: the plain registry of that kind's tests (`registry` for classic, another for
  modern), so that one kind's pushes are not found unchanged by the other's.
- tls_engine: the second engine over tcp:// with --tlsverify: .url "tcp://127.0.0.1:PORT", .ca,
  .cert, .key (a client certificate it accepts).
- ssh_engine: a private sshd on 127.0.0.1 whose sessions reach the second engine; .url
  "ssh://root@127.0.0.1:PORT", .path_dir (an `ssh` using its key: put it first on PATH).
- fault_proxy: a factory, fault_proxy(registry, rate=, seed=, max_faults=) → a seeded, bounded
  fault-injecting reverse proxy (mitmproxy) in front of that registry; .host, .url, .faults().
"""
from __future__ import annotations

import fcntl

import docker.errors
import pytest
import requests

from builder.model.errors import BuilderError
from testbed import modern, procs
from testbed.baseimages import ensure_busybox, ensure_debian
from testbed.engine import (SecondEngine, TLSEndpoint, local_client, remove_tags_of, start_second_engine,
                            trust_ca, untrust)
from testbed.faultproxy import FaultProxy, start_fault_proxy
from testbed.paths import cache_dir
from testbed.registry import Registry, start_registry
from testbed.sshd import SSHServer, start_sshd
from tests.helpers.builders import LOCAL_URL, KindEngine

# The classic builder on the containerd store drops the arm variant (arm/v5 and arm/v6 come out
# as plain arm); which engine takes those platforms is the health probes' and builders' work.
MODERN_WRONG = frozenset({"arm32v5", "arm32v6"})
ENGINE_KINDS = (pytest.param("classic", marks=pytest.mark.classic, id="classic"),
                pytest.param("modern", marks=pytest.mark.modern, id="modern"))


def _start(start, *args, **kwargs) -> Registry:
    try:
        return start(*args, **kwargs)
    except procs.StartError as error:
        pytest.fail(f"test bed: {error}", pytrace=False)


def _forget_registry(registry: Registry) -> None:
    registry.stop()
    try:
        remove_tags_of(local_client(), registry.host)
    except (docker.errors.DockerException, requests.RequestException):
        pass


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    reg = _start(start_registry, tmp_path_factory.mktemp("registry"), name="registry")
    yield reg
    _forget_registry(reg)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory) -> Registry:
    reg = _start(start_registry, tmp_path_factory.mktemp("tls-registry"), tls=True, basic_auth=True,
                 name="tls-registry")
    certs = trust_ca(reg.host, reg.ca_bundle)
    yield reg
    untrust(certs)
    _forget_registry(reg)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = local_client()
    except (docker.errors.DockerException, requests.RequestException) as error:
        pytest.skip(f"no Docker engine answers (run scripts/setup): {error}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def mirror(tmp_path_factory, docker_client) -> Registry:
    """Storage kept in the cache dir: a warm run finds the base images already pushed."""
    reg = _start(start_registry, tmp_path_factory.mktemp("mirror"), storage=cache_dir() / "mirror" / "storage",
                 name="mirror")
    try:
        # One session fills the shared storage at a time; the others then find it filled.
        with open(cache_dir() / "mirror.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ensure_busybox(docker_client, reg)
            ensure_debian(docker_client, reg)
    except BuilderError as error:  # a base image the engine or the mirror failed
        _forget_registry(reg)
        pytest.fail(f"test bed: mirror: {error}", pytrace=False)
    except BaseException:
        _forget_registry(reg)
        raise
    yield reg
    _forget_registry(reg)


@pytest.fixture(scope="session")
def second_engine(tmp_path_factory) -> SecondEngine:
    try:
        engine = start_second_engine(tmp_path_factory.mktemp("engine"))
    except procs.StartError as error:
        pytest.fail(f"test bed: {error}", pytrace=False)
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def third_engine(tmp_path_factory) -> SecondEngine:
    try:
        engine = start_second_engine(tmp_path_factory.mktemp("engine3"), tls=False, number=3)
    except procs.StartError as error:
        pytest.fail(f"test bed: {error}", pytrace=False)
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def modern_engine(docker_client) -> modern.ModernEngine:
    try:
        engine = modern.start(docker_client)
    except procs.StartError as error:
        pytest.fail(f"test bed: {error}", pytrace=False)
    yield engine
    engine.release()


@pytest.fixture(scope="module", params=ENGINE_KINDS)
def build_engine(request, docker_client) -> KindEngine:
    """The host's 20.10 (graphdriver store) as `local`, then the modern engine (containerd
    store) as `modern`: a test asking for it runs on both kinds, grouped by kind per module."""
    if request.param == "classic":
        return KindEngine("classic", "local", LOCAL_URL, docker_client)
    engine = request.getfixturevalue("modern_engine")
    return KindEngine("modern", "modern", engine.url, engine.client, MODERN_WRONG)


@pytest.fixture(scope="session")
def modern_registry(tmp_path_factory) -> Registry:
    reg = _start(start_registry, tmp_path_factory.mktemp("modern-registry"), name="modern-registry")
    yield reg
    _forget_registry(reg)


@pytest.fixture(scope="module")
def kind_registry(request, build_engine) -> Registry:
    return request.getfixturevalue("registry" if build_engine.kind == "classic"
                                   else "modern_registry")


@pytest.fixture(scope="session")
def tls_engine(second_engine) -> TLSEndpoint:
    return second_engine.tls


@pytest.fixture(scope="session")
def ssh_engine(tmp_path_factory, second_engine) -> SSHServer:
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"), docker_host=second_engine.url)
    except procs.StartError as error:
        pytest.fail(f"test bed: {error}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_proxy(tmp_path_factory):
    """Starts fault proxies: fault_proxy(upstream, rate="0.2", seed=1, max_faults=40, match="", kinds="", skip=0) → FaultProxy
    (.host, .url, .faults()), a reverse proxy on 127.0.0.1 in front of the registry `upstream`.
    Every one started is stopped at the session's end."""
    started = []

    def start(upstream: Registry, **kwargs) -> FaultProxy:
        try:
            proxy = start_fault_proxy(tmp_path_factory.mktemp("fault-proxy"), upstream, **kwargs)
        except procs.StartError as error:
            pytest.fail(f"test bed: {error}", pytrace=False)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
