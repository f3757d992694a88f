"""Serving the mirror: one loopback HTTP server for the tree and HKP key lookups.

`start` runs `python -m builder.mirror.serve DIR PORT` detached, with its PID file and log in
DIR/.work/, as `invoke registry` does; a second start finds it answering and uses it; `stop`
stops it by that PID. Paths with a component starting with "." (the .work/ state) are not
served; directories are listed as nginx's autoindex lists python.org's, without them. HKP:
`GET /pks/lookup?op=get&options=mr&search=0x<FINGERPRINT>` answers keys/<FPR>.asc with
Content-Type application/pgp-keys, as `gpg --keyserver hkp://HOST:PORT --recv-keys`
expects; op=index lists the matching fingerprints in the machine-readable format.
"""
from __future__ import annotations

import html
import io
import subprocess
import sys
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests

from builder.model.errors import BuilderError, InputError
from builder.mirror.localregistry import process_argv, stop_process, stop_recorded
from builder.mirror import layout

SERVER_NAME = "python-image-builder-mirror"
ROOT_HEADER = "X-Mirror-Root"
MODULE = "builder.mirror.serve"


class Handler(SimpleHTTPRequestHandler):
    server_version = SERVER_NAME

    def end_headers(self) -> None:
        # Which tree this server serves: a second `start` for another tree must not reuse it.
        self.send_header(ROOT_HEADER, str(Path(self.directory).resolve()))
        super().end_headers()

    def do_GET(self) -> None:
        if self._refused():
            return
        if urlsplit(self.path).path == "/pks/lookup":
            self._lookup()
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._refused():
            super().do_HEAD()

    def list_directory(self, path):
        """An autoindex page as nginx writes python.org's, so `invoke update` reads a release
        index from this mirror as from python.org; dot entries (.work/, temporary files) are
        left out, as they are not served."""
        try:
            entries = sorted(p for p in Path(path).iterdir() if not p.name.startswith("."))
        except OSError:
            self.send_error(404)
            return None
        title = html.escape(unquote(urlsplit(self.path).path))
        rows = ['<a href="../">../</a>']
        for entry in entries:
            name = entry.name + ("/" if entry.is_dir() else "")
            stat = entry.stat()
            when = time.strftime("%d-%b-%Y %H:%M", time.gmtime(stat.st_mtime))
            size = "-" if entry.is_dir() else str(stat.st_size)
            rows.append(f'<a href="{quote(name)}">{html.escape(name)}</a>'
                        f'{" " * max(1, 51 - len(name))}{when} {size:>19}')
        body = (f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
                f"<h1>Index of {title}</h1><hr><pre>{chr(10).join(rows)}\n</pre><hr></body>\r\n"
                "</html>\r\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def _refused(self) -> bool:
        if any(part.startswith(".") for part in urlsplit(self.path).path.split("/")):
            self.send_error(404)
            return True
        return False

    def _lookup(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        op, search = query.get("op", [""])[0], query.get("search", [""])[0]
        keys = Path(self.directory) / layout.KEYS
        fingerprints = sorted(p.stem for p in keys.glob("*.asc")) if keys.is_dir() else []
        found = layout.lookup_key(search, fingerprints)
        if op not in ("get", "index"):
            self.send_error(501, f"op={op} is not served; get and index are")
        elif found is None:
            self.send_error(404, "no such key")
        elif op == "get":
            self._answer((keys / f"{found}.asc").read_bytes(), "application/pgp-keys")
        else:
            self._answer(f"info:1:1\npub:{found}::::::\n".encode(), "text/plain")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def answers(port: int) -> Path | None:
    """The tree this project's mirror server on 127.0.0.1:`port` serves; None if none answers."""
    try:
        response = requests.head(f"http://127.0.0.1:{port}/", timeout=2)
    except requests.RequestException:
        return None
    if not response.headers.get("Server", "").startswith(SERVER_NAME):
        return None
    return Path(response.headers.get(ROOT_HEADER, ""))


def start(directory: Path, port: int) -> str:
    """Serve `directory` on 127.0.0.1:`port` unless the mirror answers there; returns its URL."""
    url = f"http://127.0.0.1:{port}"
    directory = directory.resolve()
    serving = answers(port)
    if serving == directory:
        print(f"the mirror of {directory} already answers on {url}; using it")
        return url
    if serving is not None:
        raise InputError(f"{url} serves another mirror, {serving}; stop it (invoke mirror "
                         f"--stop --dir {serving}) or serve this one on another --port",
                         field="port")
    if not directory.is_dir():
        raise InputError(f"{directory} does not exist: fill it first (invoke mirror)", field="dir")
    work = directory / layout.WORK
    work.mkdir(exist_ok=True)
    pid_file, log_path = work / "serve.pid", work / "serve.log"
    running = _pid(pid_file)
    if running is not None and _ours(running, directory):
        raise InputError(f"the mirror of {directory} is served by pid {running} on another "
                         "port; stop it first: invoke mirror --stop", field="port")
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", MODULE, str(directory), str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=Path(__file__).parents[2])
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if answers(port):
            print(f"mirror of {directory} served on {url} (pid {process.pid}, log {log_path})")
            return url
        time.sleep(0.1)
    if process.poll() is None:
        stop_process(process.pid, lambda: process.poll() is None)
    pid_file.unlink(missing_ok=True)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
    raise BuilderError(f"the mirror server on {url} did not come up; see {log_path}:\n{tail}")


def stop(directory: Path, port: int | None = None) -> None:
    """Stop the server `start` started for `directory`, by its PID file, and wait until it is
    gone; the message names the tree and the URL it served. Only that one: when none was
    started for `directory`, a server of another tree answering on `port` is named, not
    stopped."""
    directory = directory.resolve()
    pid_file = directory / layout.WORK / "serve.pid"
    pid = _pid(pid_file)
    argv = process_argv(pid) if pid is not None else None
    served = (f" of {directory} on http://127.0.0.1:{argv[4]}"
              if argv and len(argv) > 4 and _ours(pid, directory) else "")
    if stop_recorded(pid_file, lambda pid: _ours(pid, directory), "mirror server",
                     f"for {directory}", served):
        return
    other = answers(port) if port is not None else None
    if other is not None and other != directory:
        print(f"the mirror server on http://127.0.0.1:{port} serves {other}, left running; "
              f"stop it with: invoke mirror --stop --dir {other}")


def _pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _ours(pid: int, directory: Path) -> bool:
    argv = process_argv(pid)
    return argv is not None and argv[1:4] == ["-m", MODULE, str(directory)]


def main(argv: list[str]) -> int:
    directory, port = Path(argv[0]), int(argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=str(directory)))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
