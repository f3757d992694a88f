"""The registry client and credentials against real registries from the test bed."""
from __future__ import annotations

import base64
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from builder.registry import credentials as auth
from builder.registry.credentials import Credentials, credentials_for
from builder.model.errors import BuilderError, InputError
from builder.model.platforms import PLATFORMS
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, ImageRef, sha256_digest
from builder.registry.client import NotFound, RegistryClient, RegistryError, TLSFailed, Unauthorized
from builder.model.retry import Policy
from tests.helpers.windows_images import push_image


# --- references ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, registry, repository, tag, digest, familiar", [
    ("python", "docker.io", "library/python", "latest", None, "python:latest"),
    ("python:3.8-slim", "docker.io", "library/python", "3.8-slim", None, "python:3.8-slim"),
    ("docker.io/library/python:3", "docker.io", "library/python", "3", None, "python:3"),
    ("index.docker.io/amd64/python:3", "docker.io", "amd64/python", "3", None, "amd64/python:3"),
    ("127.0.0.1:5000/tiny:1.0.0", "127.0.0.1:5000", "tiny", "1.0.0", None,
     "127.0.0.1:5000/tiny:1.0.0"),
    ("localhost/a/b", "localhost", "a/b", "latest", None, "localhost/a/b:latest"),
    ("x/y@sha256:" + "a" * 64, "docker.io", "x/y", None, "sha256:" + "a" * 64,
     "x/y@sha256:" + "a" * 64),
])
def test_image_ref_parse(text, registry, repository, tag, digest, familiar):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == familiar
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize("text", ["Python", "python:bad tag", "x@sha256:123", "a/b:", ""])
def test_image_ref_rejects(text):
    with pytest.raises(InputError, match="not an image reference"):
        ImageRef.parse(text)


# --- credentials -----------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("BUILDER_REGISTRY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    return tmp_path / "docker" / "config.json"


def test_credentials_from_the_environment(clean_env, monkeypatch):
    assert credentials_for("127.0.0.1:5000") is None
    monkeypatch.setenv("BUILDER_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("BUILDER_REGISTRY_PASSWORD", "s3cret")
    # The CI pair goes to the run's target alone: not to a base image's host, nor anywhere
    # when the run has no target.
    assert credentials_for("127.0.0.1:5000") is None
    assert credentials_for("127.0.0.1:5000", target="127.0.0.1:5000/team") == \
        Credentials("ci", "s3cret", "BUILDER_REGISTRY_USERNAME")
    assert credentials_for("127.0.0.2:5000", target="127.0.0.1:5000") is None
    assert credentials_for("docker.io", target="127.0.0.1:5000") is None
    monkeypatch.setenv("BUILDER_REGISTRY_HOST", "registry.example.com")
    assert credentials_for("127.0.0.1:5000", target="127.0.0.1:5000") is None
    assert credentials_for("registry.example.com").username == "ci"
    monkeypatch.setenv("BUILDER_REGISTRY_127_0_0_1_5000_USERNAME", "scoped")
    monkeypatch.setenv("BUILDER_REGISTRY_127_0_0_1_5000_PASSWORD", "other")
    assert credentials_for("127.0.0.1:5000").username == "scoped"
    monkeypatch.delenv("BUILDER_REGISTRY_127_0_0_1_5000_PASSWORD")
    with pytest.raises(InputError, match="BUILDER_REGISTRY_127_0_0_1_5000_PASSWORD"):
        credentials_for("127.0.0.1:5000")


def test_credentials_never_show_the_password():
    creds = Credentials("ci", "s3cret-value", "x")
    assert "s3cret-value" not in repr(creds) and "s3cret-value" not in str(creds)


def test_credentials_from_docker_config_auths(clean_env):
    token = base64.b64encode(b"hubuser:hubpass").decode()
    local = base64.b64encode(b"me:pw:with:colons").decode()
    clean_env.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": token},
        "http://127.0.0.1:5000": {"auth": local}}}))
    assert credentials_for("docker.io") == Credentials("hubuser", "hubpass", f"{clean_env} auths")
    assert credentials_for("registry-1.docker.io").username == "hubuser"
    assert credentials_for("127.0.0.1:5000").password == "pw:with:colons"
    assert credentials_for("127.0.0.1:5001") is None


def _helper(directory: Path, name: str, script: str) -> None:
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_credentials_from_helpers(clean_env, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A helper that answers for one server (read on stdin) and says "not found" for others.
    _helper(bin_dir, "toy", 'read server; [ "$1" = get ] || exit 3\n'
            'if [ "$server" = "127.0.0.1:5000" ]; then\n'
            '  printf \'{"ServerURL":"%s","Username":"helped","Secret":"tok"}\' "$server"\n'
            'else echo "credentials not found in native keychain"; exit 1; fi\n')
    _helper(bin_dir, "store", 'read server\n'
            'printf \'{"ServerURL":"%s","Username":"stored","Secret":"%s"}\' "$server" "$server"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    clean_env.write_text(json.dumps({"credHelpers": {"127.0.0.1:5000": "toy", "127.0.0.1:5001": "toy"},
                                     "credsStore": "store"}))
    assert credentials_for("127.0.0.1:5000") == Credentials("helped", "tok", "docker-credential-toy")
    assert credentials_for("127.0.0.1:5001") is None
    hub = credentials_for("docker.io")
    assert (hub.username, hub.password) == ("stored", auth.DOCKER_HUB_KEY)
    clean_env.write_text(json.dumps({"credsStore": "absent"}))
    with pytest.raises(BuilderError, match="docker-credential-absent is not on PATH"):
        credentials_for("127.0.0.1:5000")


# --- the client against a registry -----------------------------------------------------------

def test_manifests_blobs_and_platforms(registry):
    client = RegistryClient(registry.host)
    amd64 = push_image(client, "reg/one", "amd64", PLATFORMS["amd64"])
    arm = push_image(client, "reg/one", "arm", PLATFORMS["arm32v7"])
    assert client.head_manifest("reg/one", "amd64").digest == amd64.digest
    assert client.get_manifest("reg/one", "amd64").body == amd64.body
    assert client.head_manifest("reg/one", "nope") is None
    with pytest.raises(NotFound, match=r"reg/one:nope: HTTP 404: MANIFEST_UNKNOWN"):
        client.get_manifest("reg/one", "nope")

    entries = [{"mediaType": DOCKER_MANIFEST, "digest": m.digest, "size": m.size, "platform": p}
               for m, p in ((amd64, {"architecture": "amd64", "os": "linux"}),
                            (arm, {"architecture": "arm", "os": "linux", "variant": "v7"}))]
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    assert client.put_manifest("reg/one", "list", body, DOCKER_LIST) == sha256_digest(body)
    listed = client.get_manifest("reg/one", "list")
    assert (listed.media_type, listed.body) == (DOCKER_LIST, body)

    ref = ImageRef.parse(f"{registry.host}/reg/one:list")
    assert client.resolve_platform(ref, PLATFORMS["arm32v7"]).digest == arm.digest
    with pytest.raises(NotFound, match="has no linux/s390x entry"):
        client.resolve_platform(ref, PLATFORMS["s390x"])
    single = ImageRef.parse(f"{registry.host}/reg/one:amd64")
    assert client.resolve_platform(single, PLATFORMS["amd64"]).digest == amd64.digest
    with pytest.raises(NotFound, match="is a single linux/amd64 image, not linux/arm64/v8"):
        client.resolve_platform(single, PLATFORMS["arm64v8"])

    layer = amd64.json["layers"][0]
    assert client.head_blob("reg/one", layer["digest"]).size == layer["size"]
    assert sha256_digest(client.get_blob("reg/one", layer["digest"])) == layer["digest"]
    assert client.head_blob("reg/other", layer["digest"]) is None
    assert client.mount_blob("reg/other", layer["digest"], "reg/one") is True
    assert client.head_blob("reg/other", layer["digest"]).size == layer["size"]
    assert client.mount_blob("reg/other", "sha256:" + "0" * 64, "reg/one") is False


def test_put_rejected_names_the_registry_error(registry):
    client = RegistryClient(registry.host)
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    with pytest.raises(RegistryError) as caught:
        client.put_manifest("reg/two", "broken", body, DOCKER_LIST)
    message = str(caught.value)
    assert message.startswith(f"registry {registry.host}: manifest reg/two:broken: HTTP 400: "
                              "MANIFEST_BLOB_UNKNOWN")
    assert "push the blobs and child manifests into this same repository first" in message
    assert caught.value.codes == ("MANIFEST_BLOB_UNKNOWN",) and "\n" not in message


def test_basic_auth_over_tls(tls_registry):
    creds = Credentials(tls_registry.username, tls_registry.password, "test")
    client = RegistryClient(tls_registry.host, credentials=creds, ca_bundle=str(tls_registry.ca_bundle))
    pushed = push_image(client, "auth/one", "amd64", PLATFORMS["amd64"])
    assert client.get_manifest("auth/one", "amd64").digest == pushed.digest

    wrong = RegistryClient(tls_registry.host, credentials=Credentials("builder", "wrong-pw", "test"),
                           ca_bundle=str(tls_registry.ca_bundle))
    with pytest.raises(Unauthorized) as caught:
        wrong.get_manifest("auth/one", "amd64")
    message = str(caught.value)
    assert message.startswith(f"registry {tls_registry.host} refused the credentials for user "
                              "'builder' (from test) on auth/one")
    assert "check docker login" in message and "wrong-pw" not in message and "\n" not in message


def test_tls_is_verified(tls_registry):
    """Without the CA the handshake fails, even on loopback: no silent fall back to http."""
    client = RegistryClient(tls_registry.host, credentials=Credentials("u", "p"),
                            ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or
                            "/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(TLSFailed, match=r"TLS failed .*--ca-bundle"):
        client.get_manifest("auth/one", "amd64")


class _Flaky(BaseHTTPRequestHandler):
    """A real HTTP proxy in front of the registry that answers each new path with 429 and 503
    first, then passes it through: the registry's own behaviour under load."""

    upstream = ""
    failures: dict[str, int] = {}
    served: list[int] = []
    lock = threading.Lock()

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = f"{self.command} {self.path}"
        with self.lock:
            count = self.failures.get(key, 0)
            self.failures[key] = count + 1
        if count < 2 and self.path != "/v2/":
            status = (429, 503)[count]
            self.served.append(status)
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(self.command, self.upstream + self.path, headers=headers,
                                  data=body, allow_redirects=False, timeout=10)
        self.served.append(answer.status_code)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value.replace(self.upstream, ""))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, *args):
        pass


def test_retries_429_and_503_then_succeeds(registry):
    handler = type("Handler", (_Flaky,), {"upstream": registry.url, "failures": {}, "served": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = RegistryClient(host, policy=Policy(attempts=3, base_delay=0.01))
        pushed = push_image(client, "flaky/one", "amd64", PLATFORMS["amd64"])
        assert client.get_manifest("flaky/one", "amd64").body == pushed.body
        assert handler.served.count(429) == handler.served.count(503) >= 5

        impatient = RegistryClient(host, policy=Policy(attempts=2, base_delay=0.01))
        with pytest.raises(RegistryError, match=r"HTTP 503.*kept failing after 2 attempts"):
            impatient.get_manifest("flaky/one", "never-seen")
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_registry_is_one_line():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RegistryClient(f"127.0.0.1:{port}", policy=Policy(attempts=2, base_delay=0.01))
    with pytest.raises(RegistryError) as error:
        client.get_manifest("x", "y")
    assert str(error.value) == (f"registry 127.0.0.1:{port}: the /v2/ ping failed after 2 attempts: "
                                "connection refused; check that the registry is up and reachable")


def test_an_unknown_host_says_so_plainly():
    client = RegistryClient("registry.invalid:5000", policy=Policy(attempts=1))
    with pytest.raises(RegistryError, match=r": cannot resolve the host name registry\.invalid; "):
        client.get_manifest("x", "y")


class _TokenServer(BaseHTTPRequestHandler):
    """A real token service (Distribution's token auth): RS256 JWTs with an x5c header, for
    one user, granting the scopes asked for. It records every scope set it was asked for."""

    key = None
    cert_der = b""
    user = ("tokenuser", "tokenpass")
    asked: list[tuple[str, ...]] = []

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse
        query = parse_qs(urlparse(self.path).query)
        expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad user or password"}]})
            return
        scopes = tuple(query.get("scope", []))
        self.asked.append(scopes)
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        self._answer(200, {"token": self._jwt(query["service"][0], access), "expires_in": 300})

    def _jwt(self, service: str, access: list) -> str:
        import time
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": "test-issuer", "sub": self.user[0], "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def _answer(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    """A registry with Bearer-token auth (as Docker Hub has) and its token service."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from testbed.registry import start_registry

    workdir = tmp_path_factory.mktemp("token-registry")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (workdir / "signer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    handler = type("Tokens", (_TokenServer,), {
        "key": key, "cert_der": cert.public_bytes(serialization.Encoding.DER), "asked": []})
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    registry = start_registry(workdir, name="token-registry", extra={"auth": {"token": {
        "realm": f"http://127.0.0.1:{tokens.server_address[1]}/token", "service": "test-registry",
        "issuer": "test-issuer", "rootcertbundle": str(workdir / "signer.pem")}}})
    yield registry, handler
    registry.stop()
    tokens.shutdown()
    tokens.server_close()


def test_bearer_tokens_per_scope_and_for_mounts(token_registry, clean_env):
    registry, tokens = token_registry
    client = RegistryClient(registry.host, credentials=Credentials(*tokens.user, "test"))
    pushed = push_image(client, "tok/one", "amd64", PLATFORMS["amd64"])
    assert client.get_manifest("tok/one", "amd64").body == pushed.body
    layer = pushed.json["layers"][0]["digest"]
    assert client.mount_blob("tok/two", layer, "tok/one") is True
    assert client.head_blob("tok/two", layer).size == pushed.json["layers"][0]["size"]
    assert ("repository:tok/one:pull,push",) in tokens.asked
    assert ("repository:tok/one:pull",) in tokens.asked
    assert ("repository:tok/two:pull,push", "repository:tok/one:pull") in tokens.asked
    # One token per scope set: the cache serves every later request of the same scope.
    assert len(tokens.asked) == len(set(tokens.asked))

    wrong = RegistryClient(registry.host, credentials=Credentials(tokens.user[0], "nope", "test"))
    with pytest.raises(Unauthorized, match=r"refused the credentials for user 'tokenuser' .*"
                                           r"UNAUTHORIZED: bad user or password; check docker login"):
        wrong.get_manifest("tok/one", "amd64")
    anonymous = RegistryClient(registry.host)  # clean_env: no variables, no Docker config
    with pytest.raises(Unauthorized, match="wants credentials for tok/one"):
        anonymous.get_manifest("tok/one", "amd64")
