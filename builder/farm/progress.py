"""What the user sees while jobs run: a live board on a terminal, plain lines in CI.

On a terminal every job has one line (queued, step n/m, pushing, done, skipped, failed, with
its time since it took an engine slot: the results table's clock), redrawn in place with ANSI
cursor movement. Elsewhere each state change is one line with a timestamp, step-by-step
detail stays in the job's log, and every minute a job under way says so ("still building
(14m): step 5/9"), so a CI log of a long CPython build never goes quiet.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

_FINAL = {"done", "skipped", "failed"}
_TICK = 1.0  # seconds between redraws of the elapsed times
_HEARTBEAT = 60.0  # seconds between "still …" lines in plain output
_QUIET = {"queued"}  # waiting is said once; a job waiting on another needs no heartbeat


@dataclass
class _Line:
    key: str
    engine: str
    state: str = "queued"
    detail: str = ""
    started: float | None = None
    finished: float | None = None


class Progress:
    def __init__(self, jobs: list[tuple[str, str]], out: TextIO = sys.stdout,
                 live: bool | None = None, heartbeat: float = _HEARTBEAT) -> None:
        """`jobs`: (key, engine) in display order. `live` defaults to whether `out` is a TTY."""
        self.out = out
        self.live = out.isatty() if live is None else live
        self._lines = {key: _Line(key, engine) for key, engine in jobs}
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        self._ticker = None
        self._width = max((len(k) for k in self._lines), default=0)
        if self.live and self._lines:
            self._draw()
            self._ticker = threading.Thread(target=self._tick, args=(_TICK, self._draw), daemon=True)
            self._ticker.start()
        elif self._lines:
            self._ticker = threading.Thread(target=self._tick, args=(heartbeat, self.beat),
                                            daemon=True)
            self._ticker.start()

    def update(self, key: str, state: str, detail: str = "", engine: str | None = None) -> None:
        """A job changed: state is queued, resolving, building, pushing, done, skipped or failed;
        `engine`, the engine it is now on (its pool's until then)."""
        with self._lock:
            line = self._lines[key]
            line.engine = engine or line.engine
            now = time.time()
            # One clock with the results table: from taking an engine slot (building) to the
            # end; queued again (a failover) starts it anew, as the table times the last engine.
            if state == "queued":
                line.started = None
            elif state == "building" and line.started is None:
                line.started = now
            if state in _FINAL:
                line.finished = now
            changed = state != line.state
            line.state, line.detail = state, detail
            if self.live:
                self._draw()
            elif changed:
                self.out.write(f"{time.strftime('%H:%M:%S')} {key} [{line.engine}] "
                               f"{state}{': ' + detail if detail else ''}\n")
                self.out.flush()

    def close(self) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        with self._lock:
            if self.live:
                self._draw()

    def beat(self) -> None:
        """Plain output: one "still …" line for each job under way."""
        now = time.time()
        for line in self._lines.values():
            if line.state in _FINAL or line.state in _QUIET or line.started is None:
                continue
            minutes, seconds = divmod(int(now - line.started), 60)
            self.out.write(f"{time.strftime('%H:%M:%S')} {line.key} [{line.engine}] still "
                           f"{line.state} ({minutes}m{seconds:02d}s)"
                           f"{': ' + line.detail if line.detail else ''}\n")
        self.out.flush()

    def _tick(self, every: float, action) -> None:
        while not self._stop.wait(every):
            with self._lock:
                action()

    def _draw(self) -> None:
        text = "".join(f"\x1b[2K{self._render(line)}\n" for line in self._lines.values())
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + text)
        self.out.flush()
        self._drawn = len(self._lines)

    def _render(self, line: _Line) -> str:
        elapsed = ""
        if line.started is not None:
            elapsed = f"{(line.finished or time.time()) - line.started:6.1f}s"
        detail = f"  {line.detail}" if line.detail else ""
        text = f"{line.key:<{self._width}}  {line.engine:<10} {elapsed:>7}  {line.state}{detail}"
        # A wrapped line takes two rows and the cursor-up count would be wrong.
        return text[:shutil.get_terminal_size().columns - 1]


def table(rows: list[tuple[str, str, str, str, str]]) -> str:
    """The end-of-run table: job, engine, result, digest, time."""
    header = ("job", "engine", "result", "digest", "time")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in (header, *rows))
