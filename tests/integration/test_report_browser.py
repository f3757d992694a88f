"""A real release of examples/hello writes `<out>/<repository>/index.html`, and headless
Chromium reads it as a release engineer would: a row per tag, a column per platform, a bar per
job, a click through to a tag's page and back, nothing fetched from outside file://, and a
screenshot. Two engines, as in tests/integration/test_release.py: the local one and the second."""
from __future__ import annotations

import struct

import pytest

from tests.helpers.builders import write_builders
from tests.helpers.cli import invoke, release
from tests.helpers.families import example_family
from tests.helpers.html import Page
from tests.helpers.registries import read_report
from testbed import browser

REPOSITORY = "hello"  # the tls_registry is the session's: no other test pushes hello there
PLATFORMS = ["amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "ppc64le", "s390x"]
NATIVE = {"amd64", "i386"}  # on an x86_64 engine; the others run under QEMU
LOCAL = ("amd64", "arm32v5", "arm32v7", "i386")  # the engines' platforms, as in test_release
SECOND = ("arm64v8", "ppc64le", "s390x")
# A smoke test, so that each job has all four phases.
SMOKE = """checks:
  - name: hello
    run: "cut -d ' ' -f 2 /etc/hello"
    expect: "{version}"
"""


@pytest.fixture(scope="module")
def released(tmp_path_factory, tls_registry, mirror, second_engine):
    work = tmp_path_factory.mktemp("report-browser")
    versions_path = example_family(work / "hello", "hello", REPOSITORY, smoke=SMOKE)
    builders = write_builders(work / "builders.yaml", mirror.host,
                              ("local", "unix:///var/run/docker.sock", LOCAL),
                              ("second", second_engine.url, SECOND))
    done = release("--version", "1.0.0", "--builders", str(builders), "--versions",
                   str(versions_path), "--out", str(work / "out"), "--logs", str(work / "logs"),
                   "--report", str(work / "report.json"), registry=tls_registry)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return dict(work=work, report=read_report(work / "report.json"),
                index=work / "out" / REPOSITORY / "index.html")


def test_the_release_writes_its_page_and_times_each_jobs_phases(released):
    report = released["report"]
    assert released["index"].is_file()
    assert len(report["jobs"]) == 14 and {j["status"] for j in report["jobs"]} == {"built"}
    for job in report["jobs"]:
        assert [p["phase"] for p in job["phases"]] == ["pull", "build", "smoke test", "push"], job
        assert {p["engine"] for p in job["phases"]} == {job["engine"]}
        assert job["started"] <= job["phases"][0]["started"]
        assert all(a["finished"] <= b["started"] for a, b in zip(job["phases"], job["phases"][1:]))
        assert job["phases"][-1]["finished"] <= job["finished"]
        assert job["emulated"] == (job["platform"] not in NATIVE), job
        assert job["compressed"] > job["size"], job  # its layers, not its manifest's bytes
    assert [t["members"] for t in report["tags"] if t["tag"] == "slim"] == \
        [[f"1.0.0/slim-busybox/{p}" for p in PLATFORMS]]


def test_chromium_finds_a_row_per_tag_a_column_per_platform_and_a_bar_per_job(released,
                                                                               tmp_path):
    report, index = released["report"], released["index"]
    page = Page(browser.dump_dom(index.as_uri(), tmp_path / "profile"))

    assert [a["data-tag"] for a, _ in page.find("tr", "row")] == [t["tag"] for t in report["tags"]]
    assert [a["data-platform"] for a, _ in page.find("th", "platform")] == PLATFORMS
    bars = page.find("a", "bar")
    assert sorted(a["data-job"] for a, _ in bars) == sorted(j["job"] for j in report["jobs"])
    assert {a["data-job"].rsplit("/", 1)[1] for a, _ in bars if "emulated" in a["class"]} == \
        set(PLATFORMS) - NATIVE
    engines = {a["data-engine"] for a, _ in page.find("div", "lane")}
    assert engines == {"local", "second"}
    for attributes, _ in bars:  # every bar links to its job's log, which is there
        assert (index.parent / attributes["href"]).resolve().is_file(), attributes
    assert {a["data-status"] for a, _ in page.find("div", "cell")} == {"built"}
    assert len(page.find("div", "cell")) == sum(len(t["members"]) for t in report["tags"])


def test_a_click_on_a_tag_opens_its_summary_page_and_back_offline(released, tmp_path):
    report, index = released["report"], released["index"]
    latest = next(t for t in report["tags"] if t["tag"] == "latest")
    with browser.session(tmp_path / "profile", tmp_path / "chromium.log") as page:
        page.open(index.as_uri())
        page.click('a.tag-link[href="tags/latest.html"]')
        assert page.evaluate("location.href") == (index.parent / "tags" / "latest.html").as_uri()
        text = page.evaluate("document.querySelector('#summary').innerText")
        assert page.evaluate("document.querySelector('#summary h2').innerText") == \
            latest["reference"]
        assert f"docker pull {latest['reference'].rsplit(':', 1)[0]}@{latest['digest']}" in text
        assert page.evaluate("document.querySelectorAll('#summary h3').length") == 7
        page.click("#back")
        assert page.evaluate("location.href") == index.as_uri()
        fetched = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
    assert fetched and all(url.startswith("file://") for url in fetched), fetched


def test_a_screenshot_of_the_page(released, tmp_path):
    shot = browser.screenshot(released["index"].as_uri(), tmp_path / "report.png",
                              tmp_path / "profile", size=(1400, 1100))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 1100)
    assert len(data) > 50_000  # a blank page is a few kilobytes


def test_invoke_report_renders_the_same_page_again_from_the_saved_report(released):
    work = released["work"]
    done = invoke("report", str(work / "report.json"), "--html", str(work / "again"),
                  timeout=120)
    assert done.returncode == 0, done.stderr
    again = work / "again" / REPOSITORY / "index.html"
    assert done.stdout.strip() == str(again)
    # At the same depth as out/, so even the relative log links are the same bytes.
    assert again.read_text() == released["index"].read_text()
    assert (work / "again" / REPOSITORY / "tags" / "latest.html").read_text() == \
        (released["index"].parent / "tags" / "latest.html").read_text()
