"""The HTML report's pure renderer (builder.report.html, builder.report.markdown), its edge
(builder.report.write) and its command (builder.commands.report), on hand-made report documents; tests/integration/test_report_browser.py
opens the page of a real release in Chromium."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from builder.commands import report as report_command
from builder.model.errors import InputError
from builder.report import html, markdown, write
from tests.helpers.html import Page
from tests.helpers.paths import SEED_PAGE as SEED

T0 = 1_700_000_000.0
DIGEST = "sha256:" + "ab" * 32


def phases(engine: str, start: float, *lengths: float) -> list[dict]:
    """Consecutive phases pull, build, smoke test, push of the given lengths."""
    found, at = [], start
    for name, length in zip(("pull", "build", "smoke test", "push"), lengths):
        found.append({"phase": name, "engine": engine, "started": at, "finished": at + length})
        at += length
    return found


def job(key: str, status: str = "built", engine: str | None = "local", start: float = 0,
        lengths: tuple = (1, 6, 1, 2), **extra) -> dict:
    ran = engine is not None and status != "skipped"
    document = {"job": key, "platform": key.rsplit("/", 1)[1], "engine": engine,
                "status": status, "reason": "", "digest": DIGEST if status == "built" else None,
                "size": 1_234 if status == "built" else None, "pushed": [],
                "compressed": 1_234_567 if status == "built" else None,
                "started": T0 + start if ran else None,
                "finished": T0 + start + sum(lengths) if ran else None,
                "mirrors": [], "failovers": [], "retries": 0, "emulated": False,
                "phases": phases(engine, T0 + start, *lengths) if ran else [],
                "log": f"logs/{key}.log"}
    return document | extra


def tag(name: str, members: list[str], status: str = "written", **extra) -> dict:
    return {"tag": name, "reference": f"127.0.0.1:5000/hello:{name}", "status": status,
            "digest": "sha256:" + "cd" * 32, "platforms": [], "missing": [], "reason": "",
            "members": members} | extra


def report(jobs: list[dict], tags: list[dict] = (), **extra) -> dict:
    return {"format": 1, "command": "release", "version": "1.0.0", "repository": "hello",
            "registry": "127.0.0.1:5000", "exit_code": 0, "result": "ok", "stopped_at": None,
            "started": T0 - 2, "finished": T0 + 30, "stages": {"build": {"status": "ok"}},
            "jobs": jobs, "tags": list(tags), "summaries": [], "retries": {}} | extra


def release() -> dict:
    """Two variants on four platforms; one job failed, one skipped unchanged, one without an
    engine, one emulated with retries; a tag per variant and a shared one."""
    jobs = [job("1.0.0/busybox/amd64"),
            job("1.0.0/busybox/arm64v8", engine="second", start=1, emulated=True, retries=2),
            job("1.0.0/busybox/i386", status="failed", start=2, lengths=(1, 2),
                reason="1.0.0/busybox/i386: RUN exited 1"),
            job("1.0.0/busybox/windows-amd64", status="skipped", engine=None,
                reason="no engine builds windows-amd64", log=None),
            job("1.0.0/slim/amd64", status="skipped", engine=None, digest=DIGEST,
                reason="unchanged: it has build hash sha256:…"),
            job("1.0.0/slim/arm64v8", engine="second", start=12)]
    busybox = [j["job"] for j in jobs if "/busybox/" in j["job"]]
    slim = ["1.0.0/slim/amd64", "1.0.0/slim/arm64v8"]
    return report(jobs, [tag("1.0.0", busybox), tag("slim", slim, status="unchanged"),
                         tag("latest", busybox, status="failed", digest=None,
                             reason="missing 127.0.0.1:5000/hello:1.0.0-busybox-i386")])


# --- the matrix -------------------------------------------------------------------------

def test_a_row_per_tag_a_column_per_platform_in_the_platform_tables_order():
    document = release()
    page = Page(html.index(document, {}, {}))

    assert [a["data-platform"] for a, _ in page.find("th", "platform")] == \
        ["amd64", "arm64v8", "i386", "windows-amd64"]
    assert [a["data-tag"] for a, _ in page.find("tr", "row")] == ["1.0.0", "slim", "latest"]
    rows = html.matrix(document, {}, {})
    assert {p: [c.status for c in found] for p, found in rows[0].cells.items()} == {
        "amd64": ["built"], "arm64v8": ["built"], "i386": ["failed"],
        "windows-amd64": ["no engine"]}
    assert [c.status for c in rows[1].cells["amd64"]] == ["unchanged"]
    assert (rows[2].status, rows[2].digest) == ("failed", "")


def test_each_cell_says_its_status_in_words_and_a_symbol_with_digest_size_and_time():
    page = Page(html.index(release(), {}, {}))

    statuses = {a["data-job"]: (a["data-status"], text.split()) for a, text
                in page.find("div", "cell")}
    assert statuses["1.0.0/busybox/amd64"][1] == ["✓", "built", "10.0s", "abababababab", "·",
                                                  "1.2", "MB"]
    assert statuses["1.0.0/busybox/arm64v8"][1][:3] == ["✓", "built", "QEMU"]
    assert statuses["1.0.0/busybox/i386"][1] == ["✗", "failed", "3.0s"]
    assert statuses["1.0.0/busybox/windows-amd64"][1] == ["∅", "no", "engine"]
    assert statuses["1.0.0/slim/amd64"][1] == ["=", "unchanged", "abababababab"]
    # The reason is the cell's title: a failed job says why without opening its log.
    failed = page.find("div", "cell", data_job="1.0.0/busybox/i386")[0][0]
    assert failed["title"] == "1.0.0/busybox/i386: 1.0.0/busybox/i386: RUN exited 1"


def test_a_builds_report_has_a_row_per_variant():
    document = report([job("1.0.0/busybox/amd64"), job("1.0.0/slim/amd64", start=10),
                       job("1.0.0/busybox/s390x", engine="second")], command="build")
    rows = html.matrix(document, {}, {})
    assert [(r.name, sorted(r.cells)) for r in rows] == [
        ("1.0.0/busybox", ["amd64", "s390x"]), ("1.0.0/slim", ["amd64"])]


def test_a_publish_report_lists_the_members_it_has_no_job_for():
    document = report([], [tag("1.0.0", ["1.0.0/busybox/amd64"], platforms=["linux/amd64"]),
                           tag("slim", ["1.0.0/slim/amd64"], status="failed")], command="publish")
    rows = html.matrix(document, {}, {})
    assert [[c.status for c in r.cells["amd64"]] for r in rows] == [["listed"], ["not in this run"]]


def test_a_member_the_written_list_does_not_hold_is_not_in_this_run():
    # A release limited by --platform amd64: the variant's i386 member is neither built nor listed.
    document = report([job("1.0.0/busybox/amd64")],
                      [tag("1.0.0", ["1.0.0/busybox/amd64", "1.0.0/busybox/i386"],
                           platforms=["linux/amd64"])])
    [row] = html.matrix(document, {}, {})
    assert [c.status for c in row.cells["i386"]] == ["not in this run"]


def test_a_job_attested_without_an_sbom_says_why():
    windows = job("1.0.0/windowsservercore-1809/windows-amd64",
                  no_sbom="upstream attests no Windows image, and a Windows engine runs no sh "
                          "to read an inventory")
    page = Page(html.index(report([job("1.0.0/busybox/amd64"), windows]), {}, {}))
    [(_, text)] = page.find("span", "no-sbom")
    assert text == ("attested: provenance only, no SBOM (upstream attests no Windows image, and "
                    "a Windows engine runs no sh to read an inventory)")


# --- the timeline -----------------------------------------------------------------------

def test_a_bar_per_job_on_its_engine_split_into_its_phases():
    timeline = html.timeline(release()["jobs"], {"1.0.0/busybox/amd64": "../logs/a.log"})

    assert [lane.engine for lane in timeline.lanes] == ["local", "second"]
    bars = {bar.job: bar for lane in timeline.lanes for row in lane.rows for bar in row}
    # Skipped jobs (unchanged, no engine) took no engine time: no bar.
    assert sorted(bars) == ["1.0.0/busybox/amd64", "1.0.0/busybox/arm64v8",
                            "1.0.0/busybox/i386", "1.0.0/slim/arm64v8"]
    assert timeline.seconds == 22  # from the first start to the last end
    amd64 = bars["1.0.0/busybox/amd64"]
    assert (amd64.left, round(amd64.width, 3), amd64.log) == (0, round(1000 / 22, 3),
                                                              "../logs/a.log")
    assert [(s.phase, s.left, s.width) for s in amd64.segments] == [
        ("pull", 0, 10), ("build", 10, 60), ("smoke test", 70, 10), ("push", 80, 20)]
    assert [s.phase for s in bars["1.0.0/busybox/i386"].segments] == ["pull", "build"]
    assert bars["1.0.0/busybox/i386"].status == "failed"
    emulated = bars["1.0.0/busybox/arm64v8"]
    assert (emulated.emulated, emulated.retries) == (True, 2)
    assert "emulated (QEMU)" in emulated.title and "2 registry retries" in emulated.title
    assert timeline.ticks[0] == (0, "0.0s") and timeline.ticks[-1] == (100, "22.0s")


def test_jobs_at_once_on_one_engine_get_a_row_each():
    jobs = [job("1.0.0/a/amd64"), job("1.0.0/a/i386", start=5), job("1.0.0/b/amd64", start=10),
            job("1.0.0/b/i386", start=20)]
    (lane,) = html.timeline(jobs, {}).lanes
    assert [[bar.job for bar in row] for row in lane.rows] == [
        ["1.0.0/a/amd64", "1.0.0/b/amd64", "1.0.0/b/i386"], ["1.0.0/a/i386"]]


def test_a_failover_shows_a_bar_on_each_engine_and_where_the_first_went_away():
    moved = job("1.0.0/a/arm64v8", engine="second", start=10)
    moved["phases"] = phases("local", T0 + 2, 1, 3) + moved["phases"]
    moved["failovers"] = [{"engine": "local", "cause": "connection refused", "at": T0 + 7}]
    timeline = html.timeline([moved], {})

    (first,), (second,) = [lane.rows[0] for lane in timeline.lanes]
    assert [lane.engine for lane in timeline.lanes] == ["local", "second"]
    assert (first.status, first.left, round(first.width, 3)) == ("failover", 0, round(500 / 18, 3))
    assert "engine went away: connection refused" in first.title
    assert (second.status, round(second.left, 3)) == ("built", round(800 / 18, 3))
    page = Page(html.index(report([moved]), {}, {}))
    assert [a["data-job"] for a, _ in page.find("a", "bar")] == [moved["job"]] * 2
    assert [text.strip() for _, text in page.find("span", "mark")] == ["↯"]


def test_the_engines_left_out_and_the_mirrors_used_are_named():
    jobs = [job("1.0.0/a/amd64", mirrors=[{"name": "sources", "upstream": "https://x/",
                                           "url": "http://127.0.0.1:8600/"}])]
    document = report(jobs, stages={"build": {"status": "ok", "engines": {
        "left_out": {"third": "engine third (ssh://h) is unreachable"}, "not_used_for": []}}})
    page = Page(html.index(document, {}, {}))
    engines = " ".join(page.find("dd", id="engines")[0][1].split())
    assert engines == "local: 1 job(s); third: left out: engine third (ssh://h) is unreachable"
    assert "sources http://127.0.0.1:8600/ (for https://x/)" in \
        " ".join(page.find("dd", id="mirrors")[0][1].split())


# --- the page as a whole ----------------------------------------------------------------

def test_the_verdict_duration_and_stages():
    document = release() | {"result": "failed", "exit_code": 1, "stopped_at": "publish",
                            "stages": {"build": {"status": "ok", "seconds": 12.5},
                                       "publish": {"status": "failed",
                                                   "reason": "1 of 3 tags not published"}}}
    page = Page(html.index(document, {}, {}))
    assert [text for a, text in page.find("span", "verdict")] == ["✗ failed at stage publish"]
    assert page.find("dd", id="duration")[0][1] == "32.0s"
    assert " ".join("".join(page.text).split()).count(
        "build: ok (12.5s); publish: failed: 1 of 3 tags not published") == 1


def test_the_page_is_self_contained_and_escapes_what_the_report_says():
    document = release()
    document["jobs"][2]["reason"] = '<script>alert("x")</script>'
    text = html.render(document, {"1.0.0": "## `hello:1.0.0`\n"},
                       {"1.0.0/busybox/amd64": "../../logs/1.0.0/busybox/amd64.log"})["index.html"]
    page = Page(text)
    assert not page.find("script") and not page.find("link") and not page.find("img")
    references = [a.get(key) for _, a, _ in page.elements for key in ("href", "src")
                  if a.get(key)]
    assert references and not [r for r in references if re.match(r"[a-z]+:", r)]
    assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;' in text


def test_a_tag_with_a_page_links_to_it_and_the_page_links_back():
    files = html.render(release(), {"1.0.0": "## `hello:1.0.0`\n\n-\tPlatforms:\n"}, {})
    assert sorted(files) == ["index.html", "tags/1.0.0.html"]
    page = Page(files["index.html"])
    assert [(a["href"], text) for a, text in page.find("a", "tag-link")] == \
        [("tags/1.0.0.html", "1.0.0")]
    tag_page = Page(files["tags/1.0.0.html"])
    assert [a["href"] for a, _ in tag_page.find("a", id="back")] == ["../index.html"]
    assert tag_page.find("h2")[0][1] == "hello:1.0.0"


# --- the summary page's Markdown --------------------------------------------------------

def test_a_real_summary_page_keeps_all_its_text_and_its_structure():
    if not SEED.is_file():
        pytest.fail(f"seed page not found at {SEED}: set SEED_PAGE to its path", pytrace=False)
    source = SEED.read_text(encoding="utf-8")
    page = Page(str(markdown.to_html(source)))
    text, at = "".join(page.text), 0
    fenced = False
    for line in source.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            line = re.sub(r"^(#+ |\t*-\t|\t+)", "", line).replace("`", "").replace("**", "")
            line = line.rstrip(" ")
        found = text.find(line, at)
        assert found >= 0, f"lost or out of order: {line!r}"
        at = found + len(line)
    assert len(page.find("h3")) == source.count("\n### ") == 10
    assert len(page.find("pre")) == source.count("```") // 2
    assert len(page.find("li")) == len(re.findall(r"^\t*-\t", source, re.M))
    layers = page.find("li", None)
    assert any(text.startswith("sha256:") and "Last Modified:" in text for _, text in layers)


def test_markdown_inline_code_bold_and_breaks():
    assert str(markdown.inline("a `<b>` **c**  ")) == "a <code>&lt;b&gt;</code> <strong>c</strong><br>"
    assert str(markdown.to_html("-\tx  \n\t(y)\n-\tz\n\t-\tw\n\t\tv\n")) == \
        "<ul><li>x<br>\n(y)</li><li>z<ul><li>w\nv</li></ul></li></ul>"


# --- the edge ---------------------------------------------------------------------------

def test_write_puts_the_site_beside_the_pages_with_relative_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = release()
    markdown_page = Path("out/hello/remote/1.0.0.md")
    markdown_page.parent.mkdir(parents=True)
    markdown_page.write_text("## `hello:1.0.0`\n")
    document["summaries"] = [{"tag": "1.0.0", "path": str(markdown_page)},
                             {"tag": "slim", "path": "out/hello/remote/gone.md"}]

    index = write.write(document, "out")

    assert index == Path("out/hello/index.html")
    assert sorted(p.name for p in Path("out/hello/remote").iterdir()) == ["1.0.0.md"]
    assert sorted(p.name for p in Path("out/hello/tags").iterdir()) == ["1.0.0.html"]
    page = Page(index.read_text())
    assert [a["href"] for a, _ in page.find("a", "tag-link")] == ["tags/1.0.0.html"]
    assert page.find("a", "log", href="../../logs/1.0.0/busybox/amd64.log")


def test_the_report_command_refuses_what_is_not_a_report(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"format": 9}))
    with pytest.raises(InputError, match="not a report of this tool"):
        report_command.run(report_command.ReportOptions(str(tmp_path / "other.json"),
                                                      str(tmp_path)), io.StringIO())
    with pytest.raises(InputError, match="cannot read it"):
        report_command.run(report_command.ReportOptions(str(tmp_path / "none.json"),
                                                      str(tmp_path)), io.StringIO())
