"""The one retry policy for transient failures: backoff with jitter, Retry-After capped, a budget per registry host.

Pure: the caller's `classify` says what a failure is (an answer or an exception → a
`Transient` of some `Kind`, or None), so this module knows no HTTP library and no engine.
Whatever `classify` calls None (a 404, a refused login, a Dockerfile step's exit code) goes
back to the caller at once, never retried.

Every retry is said, with its cause, to the log of the `scope` the calling thread is in (a
job's log and progress line), or on stderr outside one, and counted there and per host.
"""
from __future__ import annotations

import email.utils
import random
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Callable, Iterator, TypeVar

from builder.model.errors import BuilderError

T = TypeVar("T")


class Kind(str, Enum):
    """What went wrong, of the failures worth another attempt; the value is the log's word."""
    SERVER_ERROR = "server error"  # HTTP 500, 502, 503, 504
    RATE_LIMITED = "rate limited"  # HTTP 429, toomanyrequests
    DROPPED = "connection dropped"  # reset, refused, EOF, a body cut off midway
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Transient:
    kind: Kind
    cause: str  # as the log shows it: "HTTP 503", "connection reset by peer"
    retry_after: float | None = None  # seconds the server asked us to wait


@dataclass(frozen=True)
class Policy:
    """The numbers docs/design/reliability.md's "Retries" section states."""
    attempts: int = 8  # for one request, in all: the first and 7 retries
    # An engine's pull or push is a dozen requests in one, a few of which the engine does not
    # retry itself (the /v2/ ping, the manifest): one of them failing fails the whole, so the
    # whole gets more attempts.
    compound_attempts: int = 12
    base_delay: float = 0.5  # seconds before the first retry; doubled for each next one
    max_delay: float = 8.0  # the longest backoff
    retry_after_cap: float = 10.0  # the longest wait a Retry-After gets; longer asks are cut
    budget: int = 100  # retries per registry host in one run, all threads together

    def compound(self) -> Policy:
        """This policy for an operation of many requests, run again whole (a pull, a push)."""
        return replace(self, attempts=self.compound_attempts)

    def wait(self, retry: int, failure: Transient, rng: random.Random) -> tuple[float, str]:
        """Seconds to sleep before retry number `retry` (1, 2, …) and a note for the log
        when Retry-After was cut to the cap. Backoff: base·2^(retry−1), at most max_delay,
        times a jitter in [0.5, 1] so threads failing together do not come back together."""
        if failure.retry_after is not None:
            if failure.retry_after > self.retry_after_cap:
                return self.retry_after_cap, (f" (Retry-After {failure.retry_after:.0f}s capped "
                                              f"at {self.retry_after_cap:.0f}s)")
            return failure.retry_after, " (Retry-After)"
        backoff = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return backoff * rng.uniform(0.5, 1.0), ""


POLICY = Policy()


class RetryBudgetSpent(BuilderError):
    """A registry host used up its retries for this run: it fails too often to go on."""

    def __init__(self, host: str, budget: int, what: str, failure: Transient) -> None:
        super().__init__(f"registry {host}: {what}: {failure.cause} ({failure.kind.value}), and "
                         f"the {budget} retries this run allows that registry are spent; it "
                         "fails too often: check it, then run again (what went through is kept)")
        self.host = host
        self.failure = failure


class Budget:
    """The retries one registry host may still take in this run, shared by every thread."""

    def __init__(self, host: str, retries: int) -> None:
        self.host = host
        self.retries = retries
        self._spent = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._spent >= self.retries:
                return False
            self._spent += 1
            return True

    @property
    def spent(self) -> int:
        return self._spent


_budgets: dict[str, Budget] = {}
_budgets_lock = threading.Lock()


def budget(host: str, policy: Policy = POLICY) -> Budget:
    """The process's budget for `host`: one run is one process (an invoke task)."""
    with _budgets_lock:
        return _budgets.setdefault(host, Budget(host, policy.budget))


def spent() -> dict[str, int]:
    """Retries taken so far per registry host, for the report."""
    with _budgets_lock:
        return {host: b.spent for host, b in sorted(_budgets.items()) if b.spent}


@dataclass
class Tally:
    """The retries made inside one `scope`: a job's, a tag's."""
    retries: int = 0
    causes: list[str] = field(default_factory=list)  # the log lines, in order


_local = threading.local()
_stopping = threading.Event()
_stop_hooks: list[Callable[[], None]] = []


def stop() -> None:
    """The process is stopping (SIGTERM, Ctrl-C): no wait for a retry goes on and no retry
    starts, in any thread, and every hook (a session cutting its requests in flight) runs."""
    _stopping.set()
    for hook in list(_stop_hooks):
        hook()


def stopping() -> bool:
    return _stopping.is_set()


def on_stop(hook: Callable[[], None]) -> None:
    """Run `hook` when the process stops (see `stop`); once stopped, at once."""
    _stop_hooks.append(hook)
    if _stopping.is_set():
        hook()


@contextmanager
def scope(log: Callable[[str], None] | None = None,
          cancelled: threading.Event | None = None) -> Iterator[Tally]:
    """Count the retries this thread makes inside the block, and say each to `log` (default:
    stderr). Nested scopes: the innermost gets the line, every enclosing one the count. Once
    `cancelled` is set (Ctrl-C), a wait for a retry ends and no retry starts."""
    tally = Tally()
    outer = getattr(_local, "scopes", ())
    _local.scopes = outer + ((tally, log, cancelled),)
    try:
        yield tally
    finally:
        _local.scopes = outer


def _announce(line: str) -> None:
    scopes = getattr(_local, "scopes", ())
    for tally, _, _ in scopes:
        tally.retries += 1
        tally.causes.append(line)
    log = scopes[-1][1] if scopes else None
    if log is None:
        print(line, file=sys.stderr, flush=True)
    else:
        log(line)


def _cancelled() -> threading.Event | None:
    return next((event for _, _, event in reversed(getattr(_local, "scopes", ()))
                 if event is not None), None)


_rng = random.Random()


def call(attempt: Callable[[], T], classify: Callable[[object], Transient | None], *,
         host: str, what: str, discard: Callable[[T], None] = lambda outcome: None,
         policy: Policy = POLICY, account: Budget | None = None,
         sleep: Callable[[float], None] = time.sleep, rng: random.Random = _rng) -> T:
    """`attempt()` until `classify` finds nothing transient about its answer or exception.

    A transient answer or exception is retried after the policy's wait, `discard`ing the
    answer, while attempts and `host`'s budget (`account`, default the process's) last. Out of
    attempts, the last answer is returned or the last exception raised, for the caller to
    word; out of budget, RetryBudgetSpent; cancelled (see `scope`), a BuilderError.
    KeyboardInterrupt is never caught.
    """
    retry = 0
    while True:
        error: Exception | None = None
        try:
            outcome = attempt()
            failure = classify(outcome)
        except Exception as exc:  # classify decides which ones to retry; the rest re-raise
            failure = classify(exc)
            if failure is None:
                raise
            error, outcome = exc, None
        if failure is None:
            return outcome
        if retry + 1 >= policy.attempts:
            if error is not None:
                raise error
            return outcome
        if error is None:
            discard(outcome)
        account = account or budget(host, policy)
        if not account.take():
            raise RetryBudgetSpent(host, account.retries, what, failure) from error
        retry += 1
        delay, note = policy.wait(retry, failure, rng)
        _announce(f"retry {retry}/{policy.attempts - 1} of {what} at {host}: {failure.cause} "
                  f"({failure.kind.value}); again in {delay:.1f}s{note}")
        cancelled = _cancelled() or (_stopping if sleep is time.sleep else None)
        if cancelled is None:
            sleep(delay)
        elif cancelled.wait(delay) or _stopping.is_set():
            raise BuilderError(f"interrupted while waiting to retry {what} "
                               f"({failure.cause})") from error


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
