"""The HTML report's edge: a report document → `<out>/<repository>/index.html` and a page per tag
(`<out>/<repository>/tags/<tag>.html`).

Every release, build and publish writes its page at the end of its run (`save`);
`invoke report REPORT.json --html DIR` (`builder.commands.report`) writes it again from a saved
report. The summary pages' Markdown is read from where the report says the summary stage wrote
it; a page that is no longer there is left out, and its tag's row has no link.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from builder.model.files import write_atomic
from builder.model.report import Report
from builder.report import html


def directory(document: Mapping, out: str | Path) -> Path:
    """`<out>/<repository>`, where the summary pages go too."""
    return Path(out) / document["repository"]


def write(document: Mapping, out: str | Path) -> Path | None:
    """Write the site of `document` under `<out>/<repository>/`; returns the index's path, or
    None when the run stopped before it knew its repository (it has nothing to show)."""
    if not document.get("repository"):
        return None
    base = directory(document, out)
    pages = {}
    for summary in document["summaries"]:
        try:
            pages[summary["tag"]] = Path(summary["path"]).read_text()
        except OSError:
            continue  # moved or deleted since: the row goes without its link
    logs = {job["job"]: _href(Path(job["log"]), base) for job in document["jobs"]
            if job.get("log")}
    for relative, text in html.render(document, pages, logs).items():
        write_atomic(base / relative, text)
    return base / html.INDEX


def _href(path: Path, base: Path) -> str:
    """`path` relative to the page's directory, so the link works wherever the tree is
    opened or copied to, with file:// as with a web server."""
    return quote(Path(os.path.relpath(path.resolve(), base.resolve())).as_posix())


def save(report: Report, exit_code: int, *, json_path: str | None, html_dir: str | None) -> None:
    """The end of a run: its JSON report at `json_path` and its page under `html_dir`, each
    when given."""
    document = report.write(json_path, exit_code)
    if html_dir:
        write(document, html_dir)

