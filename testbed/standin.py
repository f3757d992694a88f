"""Stand-in Docker engines that build at once: the Docker SDK calls the build stage makes, with
images made of a few small layers, and the registry traffic a daemon's pulls and pushes make.

`standing_in` puts them in the place of `builder.farm.engines.connect` (the Runner, the health
probes and `builder.farm.engineapi` then run as they are, against these) and points every
registry client at an in-memory registry (testbed/memregistry.py). A pull fetches the
pinned manifest, its config and the layers the engine lacks; a push HEADs each blob, mounts
what came from a base's repository, uploads the rest and PUTs the manifest; each engine keeps
what it pulled and built, as a daemon does. They go through `RegistryClient`s of each
engine's own, counted apart from the project's own requests ("engine", not "client"). A build
of a platform in `failing` fails at its RUN step. Smoke tests are not run (they reach no
registry). Used by bench/farm_budget.py and tests/test_lagging.py.
"""
from __future__ import annotations

import json
import tarfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence
from unittest import mock

from builder.farm import engineapi, engines
from builder.model.builders import Engine
from builder.model.reference import DOCKER_MANIFEST, ImageRef, sha256_digest
from builder.registry import session as registry_session
from builder.registry.client import RegistryClient
from testbed.memregistry import MemoryRegistry


@contextmanager
def standing_in(registry: MemoryRegistry, hosts: Sequence[str], *,
                failing: frozenset[str] = frozenset()) -> Iterator[StandIns]:
    """Meanwhile every registry client made reaches `registry` for `hosts` (the API hosts:
    registry-1.docker.io for docker.io) and their token hosts, and every engine is a stand-in."""
    stand_ins = StandIns(registry, hosts, failing)
    made = registry_session._LimitedSession.__init__

    def session(self, limit: int) -> None:
        made(self, limit)
        stand_ins.mount(self, "client")

    with mock.patch.object(registry_session._LimitedSession, "__init__", session), \
            mock.patch.object(engines, "connect", stand_ins.connect), \
            mock.patch.object(engineapi, "run_checks", lambda *args, **kwargs: []):
        yield stand_ins


@dataclass
class _Image:
    config: dict
    layers: list[tuple[str, str]]  # (digest, the repository it came from, "" if made here)


@dataclass
class _Store:
    """One engine's images (by id and by registry digest), tags, and layer bytes."""
    images: dict[str, _Image] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    layers: dict[str, bytes] = field(default_factory=dict)
    clients: dict[str, RegistryClient] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StandIns:
    def __init__(self, registry: MemoryRegistry, hosts: Sequence[str],
                 failing: frozenset[str]) -> None:
        self.registry, self.hosts, self.failing = registry, tuple(hosts), failing
        self._stores: dict[str, _Store] = {}
        self._lock = threading.Lock()

    def connect(self, engine: Engine, timeout: int = 600) -> StandIn:
        with self._lock:
            store = self._stores.setdefault(engine.name, _Store())
        return StandIn(engine, store, self)

    def mount(self, session, who: str) -> None:
        adapter = self.registry.adapter(who)
        for host in (*self.hosts, *self.registry.token_services.values()):
            session.mount(f"https://{host}/", adapter)


class StandIn:
    """The slice of docker's APIClient the build stage uses."""

    def __init__(self, engine: Engine, store: _Store, farm: StandIns) -> None:
        self.engine, self.store, self.farm = engine, store, farm
        self.platform = engine.platforms[0]

    def version(self) -> dict:
        return {"Os": self.platform.os, "Arch": self.platform.architecture}

    def info(self) -> dict:
        return {"OSType": self.platform.os, "Architecture": self.platform.architecture,
                "OSVersion": f"{self.engine.os_version}.1" if self.engine.os_version else ""}

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def _client(self, host: str) -> RegistryClient:
        with self.store.lock:
            if host not in self.store.clients:
                self.store.clients[host] = RegistryClient(host)
                self.farm.mount(self.store.clients[host]._session._pool, "engine")
            return self.store.clients[host]

    def pull(self, repository: str, tag: str, **_) -> Iterator[dict]:
        ref = ImageRef.parse(f"{repository}@{tag}")
        if tag in self.store.images:
            yield {"status": f"{tag}: image is up to date"}
            return
        client = self._client(ref.registry)
        manifest = client.get_manifest(ref.repository, tag)
        config = client.get_config(ref.repository, manifest)
        layers = []
        for layer in manifest.json["layers"]:
            if layer["digest"] not in self.store.layers:
                self.store.layers[layer["digest"]] = client.get_blob(ref.repository,
                                                                     layer["digest"])
            layers.append((layer["digest"], ref.repository))
        self.store.images[tag] = _Image(config, layers)
        yield {"status": f"Downloaded newer image for {repository}@{tag}"}

    def build(self, fileobj, labels: dict, **_) -> Iterator[dict]:
        with tarfile.open(fileobj=fileobj) as tar:
            dockerfile = tar.extractfile("Dockerfile").read().decode()
        base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))
        yield {"stream": f"Step 1/2 : FROM {base}\n"}
        if self.platform.name in self.farm.failing:
            yield {"error": "The command '/bin/sh -c false' returned a non-zero code: 1",
                   "errorDetail": {"code": 1}}
            return
        parent = self.store.images[base.rpartition("@")[2]]
        made = []  # a layer per RUN, COPY or ADD, as the classic builder makes them
        steps = [line for line in dockerfile.splitlines()
                 if line.startswith(("RUN ", "COPY ", "ADD "))]
        for n in range(len(steps)):
            data = f"{dockerfile}\nlayer {n}\n".encode()
            self.store.layers[sha256_digest(data)] = data
            made.append((sha256_digest(data), ""))
        env = [line[4:].strip().replace(" ", "=", 1) if "=" not in line else line[4:].strip()
               for line in dockerfile.splitlines() if line.startswith("ENV ")]
        config = {**{k: v for k, v in parent.config.items() if k != "config"},
                  "config": {"Labels": dict(labels), "Env": env},
                  "rootfs": {"type": "layers", "diff_ids": [d for d, _ in parent.layers + made]}}
        image_id = sha256_digest(json.dumps(config, sort_keys=True).encode())
        self.store.images[image_id] = _Image(config, parent.layers + made)
        yield {"aux": {"ID": image_id}}

    def inspect_image(self, image_id: str) -> dict:
        config = self.store.images[image_id].config
        return {"Os": config["os"], "Architecture": config["architecture"],
                "Variant": config.get("variant"), "OsVersion": config.get("os.version")}

    def tag(self, image_id: str, repository: str, tag: str, **_) -> bool:
        self.store.tags[(repository, tag)] = image_id
        return True

    def push(self, repository: str, tag: str, **_) -> Iterator[dict]:
        image = self.store.images[self.store.tags[(repository, tag)]]
        ref = ImageRef.parse(f"{repository}:{tag}")
        client = self._client(ref.registry)
        config = json.dumps(image.config, sort_keys=True).encode()
        for digest, source in image.layers:
            if client.head_blob(ref.repository, digest):
                continue
            if not (source and client.mount_blob(ref.repository, digest, source)):
                client.upload_blob(ref.repository, self.store.layers[digest])
        body = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": client.upload_blob(ref.repository, config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": digest, "size": len(self.store.layers[digest])}
                       for digest, _ in image.layers]}).encode()
        digest = client.put_manifest(ref.repository, tag, body, DOCKER_MANIFEST)
        # A child built here FROM this image by its digest finds it, as a daemon does.
        self.store.images[digest] = _Image(image.config,
                                           [(d, s or ref.repository) for d, s in image.layers])
        yield {"status": f"{tag}: digest: {digest} size: {len(body)}"}
        yield {"aux": {"Tag": tag, "Digest": digest, "Size": len(body)}}

