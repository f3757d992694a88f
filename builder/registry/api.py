"""One call of the registry API: its URL, its scopes, its Authorization, its answer checked.

A call is under ``/v2/<repository>`` (or an absolute URL the registry handed out: an upload
``Location``). It carries this host's credentials or token for the call's scopes; a 401 teaches
the challenge again and drops the token, once, then the call is sent again. An upload
``Location`` on another host gets the request without any credentials or token of ours.
An answer of an unwanted status becomes the `builder.registry.errors` kind that fits.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import requests

from builder.registry.auth import Auth
from builder.registry.errors import RegistryError, answer_error
from builder.registry.session import Session


class Api:
    def __init__(self, session: Session, auth: Auth) -> None:
        self.registry = session.registry
        self.session = session
        self.auth = auth

    def call(self, method: str, repository: str, path: str, what: str, *,
             headers: dict | None = None, data: bytes | None = None, push: bool = False,
             also_pull: str | None = None, ok: tuple[int, ...] = (200,),
             even_refused: bool = False) -> requests.Response:
        """One API call with auth and retries; `path` is under /v2/<repository> or absolute.
        `even_refused`: sent to a registry that refuses writes too (see `Session.send`)."""
        base = self.session.base(self.auth.learn)
        url = path if "://" in path else f"{base}/v2/{repository}{path}"
        scopes = (f"repository:{repository}:{'pull,push' if push else 'pull'}",)
        if also_pull:
            scopes += (f"repository:{also_pull}:pull",)
        headers = dict(headers or {})
        # An upload Location may name another host: it gets no credentials and no token of ours.
        foreign = urlsplit(url).netloc != urlsplit(base).netloc
        fresh_auth = foreign
        while True:
            authorization = None if foreign else self.auth.authorization(scopes)
            if authorization:
                headers["Authorization"] = authorization
            response = self.session.send(method, url, what, headers, data,
                                         even_refused=even_refused)
            if response.status_code == 401 and not fresh_auth:
                self.auth.learn(response)
                self.auth.forget(scopes)
                fresh_auth = True
                continue
            break
        if response.status_code in ok:
            return response
        raise answer_error(self.registry, response, what, repository, push=push,
                           credentials=self.auth.credentials,
                           attempts=self.session.policy.attempts)

    def upload_location(self, response: requests.Response, what: str) -> str:
        """Where an upload session the registry opened goes on (its Location, made absolute)."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry}: {what}: no Location in the answer; "
                                "is this a registry v2 endpoint?")
        return urljoin(response.url, location)
