"""The registry's failures by kind, and how an answer's failure is worded.

Every failure is a ``RegistryError`` (a ``BuilderError``: exit code 1) of one line that names
the registry, the repository, the registry's error code and message, and what to do. The
kinds callers tell apart: ``NotFound`` (404), ``Unauthorized`` (401, 403, a refused token) and
``TLSFailed`` (the handshake). The wording reads an answer's status, JSON and text only, so it
takes any response object that has them.
"""
from __future__ import annotations

from typing import Callable

from builder.model.errors import BuilderError
from builder.registry.credentials import Credentials, env_prefix


# The statuses the session retries (5xx a restart or a blip explains).
RETRIED = frozenset({500, 502, 503, 504})
# Answers that say no write will land until someone acts: never retried, and a registry that
# gives them to uploads is not written to again in the run.
REFUSED_WRITES = {
    507: "the registry is out of storage: free space or grow it, then run again",
    413: "the registry (or a proxy before it) refuses bodies this large: raise its limit",
}


class RegistryError(BuilderError):
    def __init__(self, message: str, *, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class NotFound(RegistryError):
    """The registry answered 404 (the manifest, tag or blob does not exist there)."""


class Unauthorized(RegistryError):
    """The registry refused the credentials, wants some we do not have, or denied the action."""


class BadDocument(RegistryError):
    """A manifest or config that is not what was asked for: another kind, a broken shape, not
    JSON, or bytes that do not hash to the digest they are served under. The image is
    unreadable: a build makes it again, a page says so."""


class TLSFailed(RegistryError):
    """The TLS handshake failed: an untrusted certificate, or a server that speaks plain HTTP."""


def refused(registry: str, response, repository: str,
            creds: Credentials | None) -> Unauthorized:
    """A 401 (or a refused token): the credentials are wrong, or there are none."""
    codes = error_codes(response)
    if creds:
        return Unauthorized(f"registry {registry} refused the credentials for user "
                            f"{creds.username!r} (from {creds.source}) on {repository}"
                            f"{error_text(response)}; check docker login {registry} / "
                            f"BUILDER_REGISTRY_USERNAME and BUILDER_REGISTRY_PASSWORD",
                            status=response.status_code, codes=codes)
    return Unauthorized(f"registry {registry} wants credentials for {repository}"
                        f"{error_text(response)}; run docker login {registry} or set "
                        f"BUILDER_REGISTRY_USERNAME and BUILDER_REGISTRY_PASSWORD "
                        f"(or {env_prefix(registry)}_USERNAME/_PASSWORD)",
                        status=response.status_code, codes=codes)


def answer_error(registry: str, response, what: str, repository: str, *, push: bool,
                 credentials: Callable[[], Credentials | None],
                 attempts: int) -> RegistryError:
    """The error of an answer `what` did not want. `credentials` is asked only for a 401 or
    403: looking them up may run a helper that prompts."""
    status = response.status_code
    codes = error_codes(response)
    if status == 401:
        return refused(registry, response, repository, credentials())
    # A status seldom seen is named too: "HTTP 507 Insufficient Storage".
    reason = (getattr(response, "reason", "") or "") if status in REFUSED_WRITES else ""
    text = f"registry {registry}: {what}: HTTP {status}{' ' + reason if reason else ''}" \
           f"{error_text(response)}"
    if status == 404:
        return NotFound(f"{text}; check the name and that it was pushed",
                        status=status, codes=codes)
    if status == 403:
        creds = credentials()
        who = f"user {creds.username!r}" if creds else "anonymous access"
        need = "push" if push else "pull"
        return Unauthorized(f"{text}; {who} may not {need} {repository}: grant it, or log in "
                            "as a user who may", status=status, codes=codes)
    if status == 429:
        hint = "rate limited even after retries; wait, or log in for a higher limit"
    elif status in REFUSED_WRITES:
        hint = REFUSED_WRITES[status]
    elif status in RETRIED:
        hint = f"the registry kept failing after {attempts} attempts; retry later"
    elif status >= 500:
        hint = "the registry failed (answered once: not a status worth retrying); check its log"
    elif "MANIFEST_BLOB_UNKNOWN" in codes or "BLOB_UNKNOWN" in codes:
        hint = "push the blobs and child manifests into this same repository first"
    else:
        hint = "the registry rejected the request as sent"
    return RegistryError(f"{text}; {hint}", status=status, codes=codes)


def error_codes(response) -> tuple[str, ...]:
    try:
        return tuple(e.get("code", "") for e in response.json().get("errors", []))
    except (ValueError, AttributeError):
        return ()


def error_text(response) -> str:
    """`: CODE: message; CODE: message` from the registry's error JSON, or a short body."""
    try:
        errors = response.json().get("errors", [])
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
    except (ValueError, AttributeError):
        body = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        parts = [body] if body else []
    # A child manifest or blob list can be long: name the first few.
    shown = parts[:3] + ([f"and {len(parts) - 3} more"] if len(parts) > 3 else [])
    return (": " + "; ".join(shown)) if shown else ""
