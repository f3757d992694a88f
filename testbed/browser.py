"""Headless Chromium for the HTML report's tests: the DOM after load, a screenshot, and a
DevTools session to click through the pages as a reader would.

Debian's `chromium` (scripts/setup installs it); as root it runs only with --no-sandbox. The
session speaks the Chrome DevTools protocol over the websocket of --remote-debugging-port,
with wsproto (a sans-IO websocket) over a plain socket.
"""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from . import procs

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update")
TIMEOUT = 120  # seconds: Chromium's first start on a loaded 2-core machine is slow


def binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise procs.StartError("chromium is not installed: scripts/setup installs it "
                               "(apt-get install chromium)")
    return found


def _run(profile: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([binary(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"chromium {' '.join(args)} exited {done.returncode}: "
                           f"{done.stderr[-2000:]}")
    return done


def dump_dom(url: str, profile: Path) -> str:
    """The document after load, serialized (`--dump-dom`)."""
    return _run(profile, "--dump-dom", url).stdout


def screenshot(url: str, path: Path, profile: Path, size: tuple[int, int] = (1400, 1100)) -> Path:
    """A PNG of the page at `size` (`--screenshot`)."""
    _run(profile, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url)
    return path


class DevTools:
    """One page's DevTools session: commands and the events they cause, in order."""

    def __init__(self, url: str) -> None:
        where = urlparse(url)
        self._socket = socket.create_connection((where.hostname, where.port), timeout=TIMEOUT)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._messages: list[dict] = []
        self._text: list[str] = []
        self._accepted = False
        self._last_id = 0
        self._send(Request(host=where.netloc, target=where.path))
        while not self._accepted:
            self._receive()

    def _send(self, event) -> None:
        self._socket.sendall(self._ws.send(event))

    def _receive(self) -> None:
        data = self._socket.recv(1 << 16)
        if not data:
            raise ConnectionError("chromium closed the DevTools connection")
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, AcceptConnection):
                self._accepted = True
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._messages.append(json.loads("".join(self._text)))
                    self._text = []
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"chromium closed the DevTools connection: {event.reason}")

    def call(self, method: str, **params) -> dict:
        self._last_id += 1
        sent = self._last_id
        self._send(TextMessage(json.dumps({"id": sent, "method": method, "params": params})))
        while True:
            for message in self._messages:
                if message.get("id") == sent:
                    self._messages.remove(message)
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]
            self._receive()

    def events(self, method: str) -> list[dict]:
        """The `method` events received so far (taken: the next call sees only newer ones)."""
        found = [m for m in self._messages if m.get("method") == method]
        self._messages = [m for m in self._messages if m not in found]
        return [m["params"] for m in found]

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = self.events(method)
            if found:
                return found[-1]
            self._receive()
        raise TimeoutError(f"no {method} within {TIMEOUT} s")

    def evaluate(self, expression: str):
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self.events("Page.loadEventFired")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the element, then the load
        of the page it leads to."""
        box = self.evaluate("(() => { const e = document.querySelector(" + json.dumps(selector)
                            + "); e.scrollIntoView(); const r = e.getBoundingClientRect();"
                            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        self.events("Page.loadEventFired")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)
        self.wait_for("Page.loadEventFired")

    def close(self) -> None:
        self._socket.close()


@contextmanager
def session(profile: Path, log: Path) -> Iterator[DevTools]:
    """Chromium with a DevTools port, and a session on its page (Page and Network enabled)."""
    server = procs.start("chromium", [binary(), *FLAGS, "--remote-debugging-port=0",
                                      f"--user-data-dir={profile}", "about:blank"], log)
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes its port there
        server.wait_ready(lambda: active.exists() and len(active.read_text().split()) >= 2,
                          TIMEOUT, "DevToolsActivePort")
        connection = http.client.HTTPConnection("127.0.0.1", int(active.read_text().split()[0]),
                                                timeout=TIMEOUT)
        connection.request("GET", "/json/list")
        targets = json.loads(connection.getresponse().read())
        connection.close()
        page = DevTools(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        try:
            page.call("Page.enable")
            page.call("Network.enable")
            yield page
        finally:
            page.close()
    finally:
        server.stop()
