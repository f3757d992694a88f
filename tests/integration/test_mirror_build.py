"""The build stage through the builders file's mirrors, on the real engine: the Dockerfile as
sent fetches from the mirror (host networking for a loopback one), the committed one is
untouched, and the log and the report name the mirror each job used. On each engine kind
(fixture build_engine): the modern engine's host network is its own namespace, whose loopback
the test bed joins to the host's."""
from __future__ import annotations

import json
import shutil

from builder.mirror import serve
from builder.registry.client import RegistryClient
from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke
from testbed.procs import free_port

TEMPLATE = """\
FROM {{ variant.base_image }}
RUN wget -q -O /fetched.txt https://www.python.org/ftp/python/9.9.9/notes.txt \\
	&& grep -qx 'served by the mirror' /fetched.txt
"""


def test_a_build_fetches_through_the_mirror_the_builders_file_names(tmp_path, kind_registry,
                                                                    mirror, build_engine,
                                                                    tiny_family_path):
    shutil.copytree(tiny_family_path.parent / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "busybox.Dockerfile.j2").write_text(TEMPLATE)
    family = tmp_path / "versions.yaml"
    family.write_text(tiny_family_path.read_text().replace("repository: tiny\n",
                                                           "repository: tiny-mirrored\n"))
    tree = tmp_path / "mirror"
    (tree / "python" / "9.9.9").mkdir(parents=True)
    (tree / "python" / "9.9.9" / "notes.txt").write_text("served by the mirror\n")
    port = free_port()
    url = serve.start(tree, port)
    try:
        builders = write_builders(tmp_path / "builders.yaml", mirror.host,
                                  build_engine.spec("amd64"))
        # The file names a mirror nobody serves; the environment points it at the real one.
        builders.write_text(builders.read_text() + (
            "mirrors:\n  - {name: python-org, upstream: 'https://www.python.org/ftp/python/',"
            " url: 'http://127.0.0.1:9/python/'}\n"))
        done = invoke("build", "--version", "1.0.0", "--variant", "busybox", "--platform", "amd64",
                      "--push", "--registry", kind_registry.host, "--builders", str(builders),
                      "--versions", str(family), "--logs", str(tmp_path / "logs"),
                      "--report", str(tmp_path / "report.json"),
                      env={"BUILDER_MIRROR_PYTHON_ORG_URL": f"{url}/python/"})
    finally:
        serve.stop(tree)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    [job] = json.loads((tmp_path / "report.json").read_text())["jobs"]
    assert job["status"] == "built"
    assert job["mirrors"] == [{"name": "python-org", "upstream": "https://www.python.org/ftp/python/",
                               "url": f"{url}/python/"}]
    assert f"(sources from mirror python-org)" in done.stdout
    log = (tmp_path / "logs" / "1.0.0" / "busybox" / "amd64.log").read_text()
    assert f"https://www.python.org/ftp/python/ from mirror python-org ({url}/python/)" in log
    assert f"RUN wget -q -O /fetched.txt {url}/python/9.9.9/notes.txt" in log
    assert RegistryClient(kind_registry.host).head_manifest("tiny-mirrored", "1.0.0-busybox-amd64")
