"""The connection to one registry host: a limited pool, https or http, every request retried.

Pooling. One connection pool and a limit of ``concurrency`` requests in flight, held by a
semaphore around every request the session sends, so the limit holds however many threads
(the build stage runs one per job) send at once.

Transport. HTTPS with verification, always. The CA bundle is, in order: the ``ca_bundle``
argument, Docker's ``/etc/docker/certs.d/<host>/ca.crt``, then requests' default (which
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override). ``verify=`` goes on every request because
those variables override ``Session.verify``. Plain HTTP is used the way Docker treats insecure
registries: for a loopback host (127.0.0.0/8, ::1, localhost) or with ``insecure=True``, when the
HTTPS handshake fails and the same port answers as a registry over HTTP.

Bounded waits. Every request has an overall deadline (`DEADLINE`, more for a large upload)
for its connect, headers and body together, on top of the socket timeouts: a server that
sends a byte now and then is cut there, and the cut is a timeout like any other, retried. When
the process stops (SIGTERM, Ctrl-C: `builder.model.retry.stop`), every request in flight is
cut at once and none is retried.

Retries. Every request goes through the one retry policy (`builder.model.retry`): 429, 5xx,
dropped connections (also midway through a body) and timeouts are tried again, with the
policy's backoff or what ``Retry-After`` asks (capped), within the host's budget for the run.
A body is bytes, so a retried upload sends it again from the start.

A request that never got an answer is worded here (`RegistryError`, `TLSFailed`); an answer
with an unwanted status goes back to the caller, who knows what was asked
(`builder.registry.errors.answer_error`).
"""
from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from builder.model.reference import is_loopback
from builder.model import retry
from builder.registry.errors import RETRIED as _SERVER_ERRORS
from builder.registry.errors import REFUSED_WRITES, RegistryError, TLSFailed

_PING = "the /v2/ ping"
_WRITES = {"PUT", "POST", "PATCH", "DELETE"}
DEADLINE = 120.0  # seconds for a whole request without a body: connect, headers and body
UPLOAD_RATE = 1 << 20  # bytes a second an upload is given on top of the deadline, at the least


class _InFlight:
    """The sockets one request is using, so that a watchdog can cut them: at its deadline, or
    when the process stops. A socket read times out only when nothing at all comes; a server
    sending a byte every few seconds would hold a request for hours."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.cut: str | None = None  # why it was cut
        self._lock = threading.Lock()

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self.sockets.append(sock)
            cut = self.cut
        if cut:
            _shut(sock)

    def stop(self, why: str) -> None:
        with self._lock:
            self.cut = self.cut or why
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it
    except OSError:
        pass


_current = threading.local()  # the _InFlight of the request this thread is sending
_in_flight: set[_InFlight] = set()
_in_flight_lock = threading.Lock()


def _stop_all() -> None:
    with _in_flight_lock:
        requests_now = list(_in_flight)
    for request in requests_now:
        request.stop("the run is stopping")


retry.on_stop(_stop_all)


def _joining(sock: socket.socket | None) -> None:
    """`sock` joins the request this thread is sending, if any."""
    request = getattr(_current, "request", None)
    if request is not None:
        request.add(sock)


def _tracked(pool_class, connection_class):
    """`pool_class` whose sockets join the request that uses them: a kept-alive one as the
    request takes it, a new one as it connects (the response may hold it alone later)."""
    class Connection(connection_class):
        def connect(self) -> None:
            super().connect()
            _joining(self.sock)

    class Pool(pool_class):
        ConnectionCls = Connection

        def _get_conn(self, timeout=None):
            connection = super()._get_conn(timeout)
            _joining(getattr(connection, "sock", None))
            return connection
    return Pool


_POOLS = {"http": _tracked(urllib3.HTTPConnectionPool, urllib3.connection.HTTPConnection),
          "https": _tracked(urllib3.HTTPSConnectionPool, urllib3.connection.HTTPSConnection)}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS


class EnvironmentOnce:
    """For a requests.Session: the environment's settings (proxies, REQUESTS_CA_BUNDLE) read
    once per host and set of arguments, not for every request. requests walks the whole
    environment twice a request to find the proxy variables, a seventh of the CPU a request to
    a registry costs this client; a run's environment does not change."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        key = (urlsplit(url)[:2], tuple(sorted((proxies or {}).items())), stream, verify, cert)
        # Made on first use: docker's APIClient sends a request before its __init__ returns.
        known = self.__dict__.setdefault("_environment_settings", {})
        settings = known.get(key)
        if settings is None:
            settings = known[key] = super().merge_environment_settings(url, proxies, stream,
                                                                       verify, cert)
        return dict(settings)


class _LimitedSession(EnvironmentOnce, requests.Session):
    """A session that sends at most `limit` requests at once, on a pool of that many connections."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._slots = threading.BoundedSemaphore(limit)
        adapter = _Adapter(pool_connections=4, pool_maxsize=limit)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def bounded(self, deadline: float, *args, **kwargs) -> requests.Response:
        """request(), cut at `deadline` seconds (a Timeout) or when the process stops."""
        request = _InFlight()
        timer = threading.Timer(deadline, request.stop, (f"no whole answer within {deadline:.0f}s",))
        timer.daemon = True
        _current.request = request
        with _in_flight_lock:
            _in_flight.add(request)
        if retry.stopping():
            request.stop("the run is stopping")
        timer.start()
        try:
            response = self.request(*args, **kwargs)
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError):
            if request.cut:
                raise _cut(request.cut) from None
            raise
        finally:
            timer.cancel()
            _current.request = None
            with _in_flight_lock:
                _in_flight.discard(request)
        if request.cut:  # cut after the last byte came: the answer is whole, but say it
            response.close()
            raise _cut(request.cut)
        return response

    def request(self, *args, **kwargs) -> requests.Response:
        # Without stream=True the body is read before request() returns: the slot and the
        # connection are both free again when it does.
        with self._slots:
            return super().request(*args, **kwargs)


class Session:
    """Requests to `host` (the API host of `registry`: Docker Hub's differs from its name)."""

    def __init__(self, registry: str, host: str, *, ca_bundle: str | None, insecure: bool,
                 policy: retry.Policy, timeout: float, concurrency: int,
                 deadline: float | None = None) -> None:
        self.registry = registry
        self.host = host
        self.policy = policy
        self.timeout = timeout
        self.deadline = deadline or max(DEADLINE, 2 * timeout)
        self.ca_bundle = ca_bundle or _docker_certs_ca(registry)  # None: the system's CAs
        self._verify = self.ca_bundle or True
        self._allow_http = insecure or is_loopback(host)
        self.refusing: str | None = None
        self._base: str | None = None
        self._lock = threading.Lock()
        self._pool = _LimitedSession(concurrency)

    def base(self, on_unauthorized: Callable[[requests.Response], None]) -> str:
        """https://host or (loopback/insecure only) http://host, picked with a ping of /v2/
        once. A ping answered 401 goes to `on_unauthorized`: its challenge says how to log in."""
        if self._base:
            return self._base
        with self._lock:
            if self._base:
                return self._base
            base, response = self._ping()
            if response.status_code == 401:
                on_unauthorized(response)
            self._base = base
            return base

    def _ping(self) -> tuple[str, requests.Response]:
        https = f"https://{self.host}"
        try:
            return https, self.send("GET", https + "/v2/", _PING, {}, None)
        except TLSFailed as tls_error:
            if not self._allow_http:
                raise
            plain = f"http://{self.host}"
            try:
                response = self.send("GET", plain + "/v2/", _PING, {}, None)
            except RegistryError:
                raise tls_error from None
            if "Docker-Distribution-Api-Version" not in response.headers \
                    and response.status_code not in (200, 401):
                raise tls_error from None
            return plain, response

    def unanswered(self, timeout: float) -> str | None:
        """Why no connection to the host's port can be made, in one try with no retry (the
        check before a run, which must be quick); None when one can, whatever comes of it
        then (an error status, a TLS handshake that fails, a dropped connection): the run's
        own requests retry or word those."""
        try:
            self._pool.request("GET", f"https://{self.host}/v2/", verify=self._verify,
                               timeout=timeout).close()
        except (requests.exceptions.ConnectTimeout, requests.ConnectionError) as error:
            cause = getattr(error.args[0], "reason", None) if error.args else None
            if isinstance(error, requests.exceptions.ConnectTimeout) or isinstance(
                    cause, urllib3.exceptions.NewConnectionError):
                return _reason(error)  # refused, a name that does not resolve, no route
        except (requests.RequestException, OSError):
            pass  # connected: something listens there
        return None

    def refuse(self, why: str) -> None:
        with self._lock:
            if self.refusing is None:
                self.refusing = why
                print(f"registry {self.registry} refuses writes: {why}; no more uploads to it "
                      "in this run", file=sys.stderr, flush=True)

    def send(self, method: str, url: str, what: str, headers: dict, data: bytes | None, *,
             allow_redirects: bool = True, even_refused: bool = False) -> requests.Response:
        """One request under the retry policy; the last answer comes back whatever its status,
        for the caller to word. The body is read here (no streaming), so a connection dropped
        midway through it is retried like any other. A write to a registry that refuses
        writes (see `refuse`) is not sent, unless `even_refused` (putting a tag back)."""
        write = method in _WRITES
        if write and self.refusing and not even_refused:
            raise RegistryError(f"registry {self.registry}: {what} not sent: the registry "
                                f"refuses writes ({self.refusing})")
        response = self._send(method, url, what, headers, data, allow_redirects)
        if write and (response.status_code in REFUSED_WRITES or
                      response.status_code in _SERVER_ERRORS):
            # 507/413 at once; a 5xx only once the retries are spent on it.
            self.refuse(f"{what}: HTTP {response.status_code} {response.reason or ''}".strip())
        return response

    def _send(self, method: str, url: str, what: str, headers: dict, data: bytes | None,
              allow_redirects: bool) -> requests.Response:
        deadline = self.deadline + len(data or b"") / UPLOAD_RATE

        def attempt() -> requests.Response:
            try:
                return self._pool.bounded(deadline, method, url, headers=headers, data=data,
                                          verify=self._verify, timeout=self.timeout,
                                          allow_redirects=allow_redirects)
            except requests.exceptions.SSLError as error:
                raise TLSFailed(f"registry {self.registry}: TLS failed for {what}: "
                                f"{_reason(error)}; give the registry's CA with --ca-bundle "
                                f"or /etc/docker/certs.d/{self.registry}/ca.crt") from None

        netloc = urlsplit(url).netloc
        try:
            return retry.call(attempt, transient, what=what, discard=requests.Response.close,
                              host=self.registry if netloc == self.host else netloc,
                              policy=self.policy)
        except _Stopped as error:
            raise RegistryError(f"registry {self.registry}: {what} stopped: {error}") from None
        except (requests.RequestException, OSError) as error:
            after = f" after {self.policy.attempts} attempts" if transient(error) else ""
            raise RegistryError(f"registry {self.registry}: {what} failed{after}: "
                                f"{_reason(error)}; check that the registry is up and "
                                "reachable") from None


class _Stopped(requests.RequestException):
    """A request cut because the process is stopping: never retried."""


def _cut(why: str) -> requests.RequestException:
    """The error of a request its watchdog cut: a timeout (retried) or the run stopping."""
    return _Stopped(why) if retry.stopping() else requests.exceptions.Timeout(why)


def _docker_certs_ca(registry: str) -> str | None:
    path = Path("/etc/docker/certs.d") / registry / "ca.crt"
    return str(path) if path.is_file() else None


def transient(outcome: object) -> retry.Transient | None:
    """What is transient about a request's answer or exception (see `builder.model.retry`)."""
    if isinstance(outcome, requests.Response):
        status = outcome.status_code
        if status != 429 and status not in _SERVER_ERRORS:
            return None
        kind = retry.Kind.RATE_LIMITED if status == 429 else retry.Kind.SERVER_ERROR
        return retry.Transient(kind, f"HTTP {status}",
                               retry.parse_retry_after(outcome.headers.get("Retry-After")))
    if isinstance(outcome, _Stopped):
        return None
    if isinstance(outcome, requests.Timeout):
        return retry.Transient(retry.Kind.TIMEOUT, _reason(outcome))
    if isinstance(outcome, requests.exceptions.SSLError) or _unresolvable(outcome):
        return None
    # ChunkedEncodingError: the body broke off midway; a raw reset can escape urllib3's wrapping.
    if isinstance(outcome, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                            ConnectionError)):
        return retry.Transient(retry.Kind.DROPPED, _reason(outcome))
    return None


def _unresolvable(error: object) -> bool:
    """A host name that does not resolve: a typo or a network without that DNS, not a blip."""
    cause = getattr(error.args[0], "reason", None) if isinstance(error, requests.ConnectionError) \
        and error.args else None
    return isinstance(cause, urllib3.exceptions.NameResolutionError)


# What urllib3's nested connection errors mean, in words a release engineer acts on.
_PLAIN_REASONS = (
    (re.compile(r"Failed to resolve '([^']+)'"), "cannot resolve the host name {0}"),
    (re.compile(r"Connection refused"), "connection refused"),
    (re.compile(r"certificate verify failed: ([^'\"()]+)"),
     "its TLS certificate is not trusted ({0}); pass --ca-bundle or install the CA in "
     "/etc/docker/certs.d/<host>/ca.crt"),
    (re.compile(r"timed out"), "timed out"),
)


def _reason(error: Exception) -> str:
    text = str(error)
    for pattern, plain in _PLAIN_REASONS:
        match = pattern.search(text)
        if match:
            return plain.format(*(g.strip() for g in match.groups()))
    # urllib3 wraps the cause in "HTTPConnectionPool(...): Max retries exceeded ... (Caused by X)".
    match = re.search(r"Caused by (.*)\)$", text)
    return (match.group(1) if match else text)[:300]
