"""Progress output: plain lines per state change, the live redraw, the final table."""
from __future__ import annotations

import io

from builder.farm.progress import Progress, table

JOBS = [("1.0.0/busybox/amd64", "local"), ("1.0.0/busybox/s390x", "second")]


def test_plain_output_has_one_line_per_state_change_and_no_escape_codes():
    out = io.StringIO()
    progress = Progress(JOBS, out=out, live=False)
    progress.update("1.0.0/busybox/amd64", "building")
    progress.update("1.0.0/busybox/amd64", "building", "step 1/5")
    progress.update("1.0.0/busybox/amd64", "building", "step 2/5")
    progress.update("1.0.0/busybox/s390x", "failed", "1.0.0/busybox/s390x: step 3/5 failed")
    progress.close()

    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "1.0.0/busybox/amd64 [local] building",
        "1.0.0/busybox/s390x [second] failed: 1.0.0/busybox/s390x: step 3/5 failed"]
    assert "\x1b" not in out.getvalue()


def test_live_output_redraws_one_line_per_job_in_place():
    out = io.StringIO()
    progress = Progress(JOBS, out=out, live=True)
    progress.update("1.0.0/busybox/s390x", "building", "step 2/5")
    progress.update("1.0.0/busybox/amd64", "done", "sha256:abc")
    progress.close()

    frames = out.getvalue().split("\x1b[2F")  # cursor up over the two job lines
    assert len(frames) >= 4  # the first draw, two updates and the final one
    last = frames[-1].split("\n")
    assert last[0].startswith("\x1b[2K1.0.0/busybox/amd64  local")
    assert last[0].endswith("done  sha256:abc")
    assert last[1].startswith("\x1b[2K1.0.0/busybox/s390x  second")
    assert "s  building  step 2/5" in last[1]


def test_the_final_table_lines_up_its_columns():
    text = table([("1.0.0/busybox/amd64", "local", "built", "sha256:ab", "1.2s"),
                  ("1.0.0/windowsservercore-1809/windows-amd64", "-", "skipped", "-", "-")])
    header, first, second = text.splitlines()
    assert header.split() == ["job", "engine", "result", "digest", "time"]
    assert header.index("engine") == first.index("local") == second.index("-  ")
    assert first.index("built") == second.index("skipped")


def test_plain_output_says_every_so_often_what_a_long_job_is_doing():
    out = io.StringIO()
    progress = Progress(JOBS, out=out, live=False, heartbeat=3600)
    progress.update("1.0.0/busybox/amd64", "building", "step 5/9")
    progress.beat()
    progress.update("1.0.0/busybox/amd64", "done", "sha256:abc")
    progress.beat()  # nothing under way any more: silent
    progress.close()

    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[1].startswith("1.0.0/busybox/amd64 [local] still building (0m")
    assert lines[1].endswith("s): step 5/9")
    assert "s390x" not in out.getvalue()  # a queued job has nothing new to say
