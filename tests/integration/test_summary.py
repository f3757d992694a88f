"""The summary page's fetch edge against real registries, a real engine (of each kind, for the
page of images it built) and a real HTTP server for foreign layer urls. The pure renderer:
tests/unit/test_summary.py."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import threading
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from builder.registry import credentials as auth
from builder.registry.credentials import Credentials
from builder.model.reference import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, ImageRef
from builder.registry.client import RegistryClient
from builder.model.retry import Policy
from builder.summary.fetch import summarize, write_page
from builder.summary.page import size_text
from builder.publish.lists import list_media_type, platform_fields
from testbed.registry import start_registry
from tests.helpers.cli import invoke
from tests.helpers.windows_images import CONFIG_TYPE, LAYER_TYPE, POWERSHELL

FOREIGN_TYPE = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class _LayerServer(ThreadingHTTPServer):
    """A real HTTP server standing in for Microsoft's download server of Windows base layers."""
    daemon_threads = True
    last_modified = "Tue, 18 Sep 2018 20:20:50 GMT"

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _LayerHandler)
        self.heads: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _LayerHandler(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.server.heads.append(self.path)
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/moved"))
        elif self.path.startswith("/layers/"):
            self.send_response(200)
            self.send_header("Last-Modified", self.server.last_modified)
        else:
            self.send_response(200)
        # /sized/<n>/…: a layer file of n bytes, as its server says in a HEAD.
        sized = re.match(r"/sized/(\d+)/", self.path)
        self.send_header("Content-Length", sized.group(1) if sized else "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def layer_server():
    server = _LayerServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def foreign_registry(tmp_path_factory):
    """A registry of this module's own for the Windows-shaped images (foreign layers allowed,
    as on every registry of the test bed)."""
    registry = start_registry(tmp_path_factory.mktemp("foreign-registry"), name="foreign-registry")
    yield registry.host
    registry.stop()


def _push_image(client: RegistryClient, repository: str, tag: str, config: dict,
                layers: list[bytes], foreign: list[dict] = ()) -> str:
    """PUT a hand-made image (blobs, then its manifest); returns the manifest digest."""
    config_bytes = json.dumps(config).encode()
    descriptors = list(foreign)
    for data in layers:
        descriptors.append({"mediaType": LAYER_TYPE, "size": len(data),
                            "digest": client.upload_blob(repository, data)})
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": CONFIG_TYPE, "size": len(config_bytes),
                           "digest": client.upload_blob(repository, config_bytes)},
                "layers": descriptors}
    return client.put_manifest(repository, tag, json.dumps(manifest).encode(), DOCKER_MANIFEST)


def _push_list(client: RegistryClient, repository: str, tag: str, entries: list[tuple[str, dict]],
               media_type: str = DOCKER_LIST) -> str:
    manifests = []
    for digest, platform in entries:
        child = client.get_manifest(repository, digest)
        manifests.append({"mediaType": child.media_type, "size": child.size, "digest": digest,
                          "platform": platform})
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}).encode()
    return client.put_manifest(repository, tag, body, media_type)


def _windows_config(os_version: str, base: str) -> dict:
    shell = " ".join(POWERSHELL) + " "
    return {
        "architecture": "amd64", "os": "windows", "os.version": os_version,
        "docker_version": "18.03.1-ee-4",
        "config": {"Cmd": ["python"], "Shell": POWERSHELL},
        "history": [
            {"created": "2018-09-15T09:10:26.123Z", "created_by": f"Apply image {base}"},
            {"created": "2019-10-09T13:07:48Z", "created_by": shell + "#(nop)  SHELL [" +
             " ".join(POWERSHELL) + "]"},
            {"created": "2019-10-15T23:04:32Z", "created_by": shell + "#(nop)  ENV PYTHON_VERSION=3.8.0"},
            {"created": "2019-10-15T23:07:08Z", "created_by": shell + "Write-Host 'x/y'; \tWrite-Host z"},
        ],
    }


def test_windows_shaped_list_with_foreign_layers(foreign_registry, layer_server):
    """No Windows engine exists here: hand-made Windows-shaped images, pushed straight to the
    registry, stand in for the ones a Windows engine would build."""
    host = foreign_registry
    client = RegistryClient(host)
    repository = "summary/windows"
    shared_base = {"mediaType": FOREIGN_TYPE, "size": 1534685324,
                   "digest": "sha256:" + hashlib.sha256(b"1809 base").hexdigest(),
                   "urls": [layer_server.url("/moved/layers/1809.tar.gz")]}
    update = {"mediaType": FOREIGN_TYPE, "size": 666618146,
              "digest": "sha256:" + hashlib.sha256(b"1809 update").hexdigest(),
              "urls": [layer_server.url("/plain/update.tar.gz")]}  # answers without Last-Modified
    entries = []
    for os_version in ("10.0.17763.805", "10.0.17763.806"):
        digest = _push_image(client, repository, os_version, _windows_config(os_version, "1809-RTM-amd64"),
                             [b"ENV layer", os_version.encode()], [shared_base, update])
        entries.append((digest, {"architecture": "amd64", "os": "windows", "os.version": os_version}))
    list_digest = _push_list(client, repository, "latest", entries)

    layer_server.heads.clear()
    ref = ImageRef.parse(f"{host}/{repository}:latest")
    page = summarize(client, ref)
    lines = page.splitlines()

    # Each url once although both images use both layers; the redirect is followed.
    assert sorted(layer_server.heads) == ["/layers/1809.tar.gz", "/moved/layers/1809.tar.gz",
                                          "/plain/update.tar.gz"]
    assert lines[3] == f"$ docker pull {host}/{repository}@{list_digest}"
    assert lines[7:10] == ["-\tPlatforms:", "\t-\twindows version 10.0.17763.805; amd64",
                           "\t-\twindows version 10.0.17763.806; amd64"]
    section = page.split("\n\n### ")[1]
    assert section.startswith(f"`{host}/{repository}:latest` - windows version 10.0.17763.805; amd64")
    assert f"$ docker pull {host}/{repository}@{entries[0][0]}" in section
    assert "-\tDocker Version: 18.03.1-ee-4\n" in section
    total = 1534685324 + 666618146 + len(b"ENV layer") + len(b"10.0.17763.805")
    assert f"-\tTotal Size: **{size_text(total)}**  \n" in section
    assert ("-\t`SHELL`: `[\"powershell\",\"-Command\",\"$ErrorActionPreference = 'Stop'; "
            "$ProgressPreference = 'SilentlyContinue';\"]`\n") in section
    assert ("```dockerfile\n"
            "# Sat, 15 Sep 2018 09:10:26 GMT\nRUN Apply image 1809-RTM-amd64\n"
            "# Wed, 09 Oct 2019 13:07:48 GMT\nSHELL [" + " ".join(POWERSHELL) + "]\n"
            "# Tue, 15 Oct 2019 23:04:32 GMT\nENV PYTHON_VERSION=3.8.0\n"
            "# Tue, 15 Oct 2019 23:07:08 GMT\nRUN Write-Host 'x/y'; \tWrite-Host z\n"
            "```\n") in section
    layers = section.split("-\tLayers:\n")[1]
    assert layers.startswith(
        f"\t-\t`{shared_base['digest']}`  \n\t\tLast Modified: {_LayerServer.last_modified}  \n"
        f"\t\tSize: 1.5 GB (1534685324 bytes)  \n\t\tMIME: {FOREIGN_TYPE}\n"
        f"\t-\t`{update['digest']}`  \n\t\tSize: 666.6 MB (666618146 bytes)  \n\t\tMIME: {FOREIGN_TYPE}\n")
    # Distribution 2.8 sends no Last-Modified on blob HEADs: the registry layers have no such line.
    assert page.count("Last Modified:") == 2


def test_sizes_media_types_and_dates_the_manifest_and_config_leave_out(foreign_registry, layer_server):
    """Upstream's generator, run against our registry, showed these: a foreign layer with urls
    but no size is as large as its url's Content-Length; a layer without mediaType is of the
    Content-Type its blob HEAD answers; a `created` without a zone is UTC."""
    client = RegistryClient(foreign_registry)
    repository = "summary/corners"
    foreign = {"mediaType": FOREIGN_TYPE,
               "digest": "sha256:" + hashlib.sha256(b"unsized base").hexdigest(),
               "urls": [layer_server.url("/sized/1534685324/base.tar.gz")]}
    plain = b"a layer whose descriptor has no mediaType"
    config = {**_windows_config("10.0.17763.805", "1809-RTM-amd64"),
              "history": [{"created": "2019-10-16T23:25:59", "created_by": "Apply image 1809"}]}
    config_bytes = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": CONFIG_TYPE, "size": len(config_bytes),
                           "digest": client.upload_blob(repository, config_bytes)},
                "layers": [foreign, {"size": len(plain),
                                     "digest": client.upload_blob(repository, plain)}]}
    client.put_manifest(repository, "1809", json.dumps(manifest).encode(), DOCKER_MANIFEST)

    page = summarize(RegistryClient(foreign_registry), ImageRef.parse(f"{foreign_registry}/{repository}:1809"))

    assert (f"\t-\t`{foreign['digest']}`  \n\t\tSize: 1.5 GB (1534685324 bytes)  \n"
            f"\t\tMIME: {FOREIGN_TYPE}\n") in page
    # Distribution answers a blob HEAD with application/octet-stream.
    assert page.endswith(f"\t\tSize: {size_text(len(plain))}  \n\t\tMIME: application/octet-stream\n")
    assert f"-\tTotal Size: **{size_text(1534685324 + len(plain))}**  \n" in page
    assert "```dockerfile\n# Wed, 16 Oct 2019 23:25:59 GMT\nRUN Apply image 1809\n```" in page


def test_a_foreign_layer_server_out_of_reach_leaves_out_only_its_last_modified(foreign_registry):
    """Build networks often cannot reach Microsoft's servers: the page still goes out."""
    client = RegistryClient(foreign_registry, policy=Policy(attempts=1))
    repository = "summary/windows-offline"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    base = {"mediaType": FOREIGN_TYPE, "size": 1534685324,
            "digest": "sha256:" + hashlib.sha256(b"offline base").hexdigest(),
            "urls": [f"http://127.0.0.1:{closed}/layers/base.tar.gz"]}
    _push_image(client, repository, "1809", _windows_config("10.0.17763.805", "1809-RTM-amd64"),
                [b"ENV layer"], [base])

    page = summarize(client, ImageRef.parse(f"{foreign_registry}/{repository}:1809"))

    assert (f"\t-\t`{base['digest']}`  \n\t\tSize: 1.5 GB (1534685324 bytes)  \n"
            f"\t\tMIME: {FOREIGN_TYPE}\n") in page
    assert "Last Modified:" not in page


def test_single_manifest_tag_and_missing_tag(registry):
    client = RegistryClient(registry.host)
    config = {"architecture": "arm", "os": "linux", "variant": "v7",
              "config": {"Cmd": None, "Entrypoint": []},
              "history": [{"created": "2024-02-29T12:00:00Z", "created_by": "/bin/sh -c #(nop) COPY file:x in / "}]}
    digest = _push_image(client, "summary/single", "1.0", config, [b"x" * 1500])
    page = summarize(client, ImageRef.parse(f"{registry.host}/summary/single:1.0"))
    assert page.splitlines()[:12] == [
        f"## `{registry.host}/summary/single:1.0`", "", "```console",
        f"$ docker pull {registry.host}/summary/single@{digest}", "```", "",
        "-\tPlatforms:", "\t-\tlinux; arm", "", f"### `{registry.host}/summary/single:1.0` - linux; arm", "",
        "-\tManifest MIME: `application/vnd.docker.distribution.manifest.v2+json`"]
    assert "Entrypoint" not in page and "Default Command" not in page
    assert "# Thu, 29 Feb 2024 12:00:00 GMT\nCOPY file:x in / \n" in page

    missing = summarize(client, ImageRef.parse(f"{registry.host}/summary/single:2.0"))
    assert missing == f"## `{registry.host}/summary/single:2.0`\n\n**does not exist** (yet?)\n"


def test_write_page_and_the_summary_task(registry, tmp_path):
    client = RegistryClient(registry.host)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "history": []}
    _push_image(client, "summary/cli", "1.0", config, [b"layer"])
    ref = ImageRef.parse(f"{registry.host}/summary/cli:1.0")

    path = write_page(ref, summarize(client, ref), tmp_path)
    assert path == tmp_path / "summary/cli/remote/1.0.md"
    assert path.read_text() == summarize(client, ref)
    assert [p.name for p in path.parent.iterdir()] == ["1.0.md"]  # no temporary left behind

    printed = invoke("summary", str(ref))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == path.read_text()

    written = invoke("summary", str(ref), "--out", str(tmp_path / "out"))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out/summary/cli/remote/1.0.md").read_text() == printed.stdout

    bad = invoke("summary", "Not A Ref")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "not an image reference" in bad.stderr


BUILT_DOCKERFILE = """\
FROM {base}
ARG GREETING=hello
ENV PLACE=world
COPY greeting.txt /greeting.txt
RUN echo "$GREETING $PLACE" > /greeting && cat /greeting.txt >> /greeting
CMD ["sh", "-c", "cat /greeting"]
"""


def _build_and_push(docker_client, mirror, repository: str, name: str, oci: str) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, text in (("Dockerfile", BUILT_DOCKERFILE.format(base=f"{mirror.host}/library/busybox:{name}")),
                           ("greeting.txt", f"from {name}\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image = f"{repository}:{name}"
    # RUN's created_by starts `|1 GREETING=…`: the build args given that no ENV overrides.
    for event in docker_client.api.build(fileobj=context, custom_context=True, tag=image, platform=oci,
                                         buildargs={"GREETING": f"hi {name}"},
                                         rm=True, forcerm=True, pull=True, decode=True):
        assert "error" not in event, event
    for event in docker_client.api.push(repository, name, stream=True, decode=True):
        assert "error" not in event, event
    return image


_DATE_LINE = re.compile(r"# (\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT)")


def _dockerfile_entries(section: str) -> list[tuple[str, str]]:
    """The dockerfile block as (date, instruction text) pairs."""
    entries: list[tuple[str, list[str]]] = []
    for line in section.split("```dockerfile\n")[1].split("```\n")[0].splitlines():
        date = _DATE_LINE.fullmatch(line)
        if date:
            entries.append((date.group(1), []))
        else:
            entries[-1][1].append(line)
    return [(date, "\n".join(lines)) for date, lines in entries]


def test_page_of_built_images_agrees_with_registry_and_engine(kind_registry, mirror, build_engine):
    docker_client = build_engine.client
    repository = f"{kind_registry.host}/summary/built"
    client = RegistryClient(kind_registry.host)
    platforms = {"amd64": "linux/amd64", "arm64v8": "linux/arm64/v8"}
    images = {name: _build_and_push(docker_client, mirror, repository, name, oci)
              for name, oci in platforms.items()}
    entries = []
    for name in platforms:
        manifest = client.get_manifest("summary/built", name)
        config = client.get_config("summary/built", manifest)
        # As publish lists it: the containerd store's configs leave arm64's v8 out.
        entries.append((manifest.digest, platform_fields(config)))
    manifest_type = DOCKER_MANIFEST if build_engine.kind == "classic" else OCI_MANIFEST
    list_digest = _push_list(client, "summary/built", "multi", entries,
                             list_media_type([manifest_type]))
    _push_list(client, "summary/built", "multi-oci", entries, OCI_INDEX)

    page = summarize(client, ImageRef.parse(f"{repository}:multi"))
    assert page.splitlines()[3] == f"$ docker pull {repository}@{list_digest}"
    assert "\t-\tlinux; amd64\n\t-\tlinux; arm64 variant v8\n\n" in page
    assert "Last Modified" not in page  # Distribution 2.8 sends no Last-Modified on blob HEADs
    engine_version = docker_client.version()["Version"]
    for section, (name, image), (digest, _) in zip(page.split("\n\n### ")[1:], images.items(), entries):
        inspected = docker_client.api.inspect_image(image)
        manifest = client.get_manifest("summary/built", digest)
        config = client.get_config("summary/built", manifest)
        assert f"{repository}@{digest}" in inspected["RepoDigests"]
        assert f"$ docker pull {repository}@{digest}\n" in section
        assert f"-\tManifest MIME: `{manifest_type}`\n" in section
        # The page says what the config says: the graphdriver store records the engine's
        # version there, the containerd store does not.
        recorded = engine_version if build_engine.kind == "classic" else None
        assert config.get("docker_version") == recorded
        assert ("-\tDocker Version: " in section) == (recorded is not None)
        assert recorded is None or f"-\tDocker Version: {recorded}\n" in section
        # The image ID is the config's digest; the containerd store's engine says the manifest's.
        config_digest = manifest.json["config"]["digest"]
        assert f"-\tImage ID: `{config_digest}`\n" in section
        assert inspected["Id"] == (config_digest if build_engine.kind == "classic" else digest)
        assert '-\tDefault Command: `["sh","-c","cat \\/greeting"]`\n' in section

        # The containerd store pushes its own layers as OCI's, the base's as they came.
        layers = manifest.json["layers"]
        assert {layer["mediaType"] for layer in layers} == (
            {LAYER_TYPE} if build_engine.kind == "classic" else {LAYER_TYPE, OCI_LAYER})
        sizes = [client.head_blob("summary/built", layer["digest"]).size for layer in layers]
        assert section.split("-\tLayers:\n")[1].rstrip("\n") == "\n".join(
            f"\t-\t`{layer['digest']}`  \n\t\tSize: {size_text(size)}  \n\t\tMIME: {layer['mediaType']}"
            for layer, size in zip(layers, sizes))
        assert f"-\tTotal Size: **{size_text(sum(sizes))}**  \n" in section

        history = list(reversed(docker_client.api.history(image)))
        entries_shown = _dockerfile_entries(section)
        assert [date for date, _ in entries_shown] == [
            format_datetime(datetime.fromtimestamp(entry["Created"], timezone.utc), usegmt=True)
            for entry in history]
        ours = [text for _, text in entries_shown[-5:]]
        assert ours[0] == "ARG GREETING=hello"
        assert ours[1] == "ENV PLACE=world"
        assert re.fullmatch(r"COPY file:[0-9a-f]{64} in /greeting.txt ", ours[2])
        assert ours[3] == (f'# ARGS: GREETING=hi {name}\n'
                           'RUN echo "$GREETING $PLACE" > /greeting && cat /greeting.txt >> /greeting')
        assert ours[4] == 'CMD ["sh" "-c" "cat /greeting"]'

    oci_page = summarize(client, ImageRef.parse(f"{repository}:multi-oci"))
    assert "-\tManifest MIME: `application/vnd.oci.image.index.v1+json`\n" in oci_page
    assert oci_page.split("\n-\tPlatforms:")[1] == page.replace(":multi`", ":multi-oci`").split("\n-\tPlatforms:")[1]


def test_summary_task_over_tls_with_basic_auth(tls_registry):
    client = RegistryClient(tls_registry.host, credentials=Credentials(tls_registry.username, tls_registry.password),
                            ca_bundle=str(tls_registry.ca_bundle))
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "history": []}
    digest = _push_image(client, "summary/private", "1.0", config, [b"private layer"])
    ref = f"{tls_registry.host}/summary/private:1.0"
    prefix = auth.env_prefix(tls_registry.host)

    def invoke_summary(password: str) -> subprocess.CompletedProcess:
        env = {f"{prefix}_USERNAME": tls_registry.username, f"{prefix}_PASSWORD": password}
        return invoke("summary", ref, "--ca-bundle", str(tls_registry.ca_bundle), env=env)

    good = invoke_summary(tls_registry.password)
    assert good.returncode == 0, good.stderr
    assert good.stdout == summarize(client, ImageRef.parse(ref))
    assert f"$ docker pull {tls_registry.host}/summary/private@{digest}\n" in good.stdout

    refused = invoke_summary("wrong-" + tls_registry.password)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "refused the credentials" in refused.stderr
    assert tls_registry.password not in refused.stderr

    # Without credentials the registry answers 401, which is how Docker Hub answers for a
    # repository that does not exist: the page says so, as repo-info's does.
    anonymous = RegistryClient(tls_registry.host, ca_bundle=str(tls_registry.ca_bundle))
    assert summarize(anonymous, ImageRef.parse(ref)) == f"## `{ref}`\n\n**does not exist** (yet?)\n"
