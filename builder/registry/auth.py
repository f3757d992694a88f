"""What one registry host wants to see: its challenge, Basic credentials or bearer tokens.

The ``/v2/`` challenge decides: Basic sends the credentials on every request; Bearer fetches a
token per scope set (``repository:R:pull``; ``pull,push`` for writes; plus
``repository:SRC:pull`` for cross-repository mounts) with GET and Basic credentials when there
are some, cached per scope until it expires. Credentials come from
``credentials.credentials_for`` the first time a registry asks for them; the CI pair only when
this host is the run's ``target`` (see builder/registry/credentials.py). Which requests get
them is `builder.registry.api`'s business: this host's, never another's.
"""
from __future__ import annotations

import base64
import re
import threading
import time

import requests

from builder.registry import credentials as lookup
from builder.registry.credentials import Credentials
from builder.registry.errors import RegistryError, Unauthorized, error_text, refused
from builder.registry.session import Session

_TOKEN_MARGIN = 10.0  # seconds before a token's expiry that it is renewed

Challenge = tuple[str, dict[str, str]]  # ("bearer", {realm, service}) or ("basic", {realm})


class Auth:
    def __init__(self, session: Session, *, credentials: Credentials | None,
                 target: str | None) -> None:
        self.registry = session.registry
        self._session = session
        self._credentials = credentials
        self._credentials_looked_up = credentials is not None
        self._target = target  # the run's --registry: the CI pair's one registry
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._credentials_lock = threading.Lock()  # a helper may prompt: run it once

    def credentials(self) -> Credentials | None:
        """The credentials this host gets (given, or looked up once), or None: anonymous."""
        with self._credentials_lock:
            if not self._credentials_looked_up:
                self._credentials = lookup.credentials_for(self.registry, target=self._target)
                self._credentials_looked_up = True
            return self._credentials

    def learn(self, response: requests.Response) -> None:
        """Take the challenge of a 401 answer (the ping's, or a request's), if it names one."""
        challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge:
            with self._lock:
                self._challenge = challenge

    def forget(self, scopes: tuple[str, ...]) -> None:
        """Drop the token of `scopes`: the registry refused it."""
        with self._lock:
            self._tokens.pop(scopes, None)

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header for a request needing `scopes`, or None: anonymous."""
        challenge = self._challenge
        if not challenge:
            return None
        kind, params = challenge
        if kind == "basic":
            creds = self.credentials()
            return _basic(creds) if creds else None
        with self._lock:
            cached = self._tokens.get(scopes)
        if cached and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        token, lifetime = self._fetch_token(params, scopes)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 1.0))
        return f"Bearer {token}"

    def refused(self, response: requests.Response, repository: str) -> Unauthorized:
        return refused(self.registry, response, repository, self.credentials())

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.registry} asks for a Bearer token without a "
                                "realm; it is misconfigured")
        query = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        creds = self.credentials()
        headers = {"Authorization": _basic(creds)} if creds else {}
        what = f"token for {' '.join(scopes)} from {realm}"
        response = self._session.send(
            "GET", requests.Request("GET", realm, params=query).prepare().url, what, headers, None)
        if response.status_code in (401, 403):
            raise self.refused(response, scopes[0].split(":")[1])
        if response.status_code != 200:
            raise RegistryError(f"registry {self.registry}: {what}: HTTP {response.status_code}"
                                f"{error_text(response)}; check the token service")
        try:
            answer = response.json()
            token = answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"registry {self.registry}: {what}: the answer has no token; "
                                "check the token service") from None
        return token, float(answer.get("expires_in") or 60)


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))
