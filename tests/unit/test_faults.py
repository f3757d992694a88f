"""The one retry policy's rules: backoff, Retry-After, what is transient, the shared budget,
cancellation. No sleeping: `sleep` is recorded. Through a fault proxy: tests/integration/test_faults.py."""
from __future__ import annotations

import random
import threading

import pytest
import requests

from builder.farm import engineapi
from builder.model import retry
from builder.farm.engineapi import RegistryFailed, StepFailed
from builder.model.builders import Engine
from builder.model.errors import BuilderError
from builder.model.reference import Descriptor
from builder.registry.client import transient
from builder.model.retry import Budget, Kind, Policy, RetryBudgetSpent, Transient

SERVER = Transient(Kind.SERVER_ERROR, "HTTP 503")


class _Flaky:
    """An operation failing `failures` times with `error` (an exception or an answer) first."""

    def __init__(self, failures: int, error: object, answer: object = "ok") -> None:
        self.failures, self.error, self.answer, self.calls = failures, error, answer, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            if isinstance(self.error, BaseException):
                raise self.error
            return self.error
        return self.answer


def _classify(outcome):
    if isinstance(outcome, ConnectionResetError):
        return Transient(Kind.DROPPED, "connection reset")
    if outcome == "503":
        return SERVER
    if outcome == "429":
        return Transient(Kind.RATE_LIMITED, "HTTP 429", retry_after=3600.0)
    return None


def _call(operation, *, policy=Policy(), account=None, sleeps=None, **kwargs):
    sleeps = [] if sleeps is None else sleeps
    return retry.call(operation, _classify, host="registry.test", what="GET manifest x",
                      policy=policy, account=account or Budget("registry.test", 1000),
                      sleep=sleeps.append, rng=random.Random(7), **kwargs)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_its_upper_half():
    policy = Policy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for n in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (n - 1))
        delays = [policy.wait(n, SERVER, rng)[0] for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), n
        assert len(set(delays)) > 100  # jittered, not one value
    assert max(policy.wait(30, SERVER, rng)[0] for _ in range(100)) <= 8.0


def test_retry_after_is_honoured_up_to_the_cap_and_the_cap_is_said():
    policy = Policy(retry_after_cap=10.0)
    asked = Transient(Kind.RATE_LIMITED, "HTTP 429", retry_after=1.0)
    assert policy.wait(1, asked, random.Random()) == (1.0, " (Retry-After)")
    greedy = Transient(Kind.RATE_LIMITED, "HTTP 429", retry_after=3600.0)
    delay, note = policy.wait(1, greedy, random.Random())
    assert delay == 10.0 and note == " (Retry-After 3600s capped at 10s)"

    lines, sleeps = [], []
    with retry.scope(lines.append):
        assert _call(_Flaky(1, "429"), sleeps=sleeps) == "ok"
    assert sleeps == [10.0]
    assert lines == ["retry 1/7 of GET manifest x at registry.test: HTTP 429 (rate limited); "
                     "again in 10.0s (Retry-After 3600s capped at 10s)"]


def test_retry_after_reads_seconds_and_http_dates():
    assert retry.parse_retry_after("1") == 1.0
    assert retry.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry.parse_retry_after("soon") is None and retry.parse_retry_after(None) is None


def test_transient_failures_are_retried_counted_and_logged_with_their_cause():
    lines, sleeps = [], []
    operation = _Flaky(3, ConnectionResetError("reset"))
    with retry.scope() as outer, retry.scope(lines.append) as inner:
        assert _call(operation, sleeps=sleeps) == "ok"
    assert operation.calls == 4 and len(sleeps) == 3
    assert inner.retries == outer.retries == 3
    assert [line.split(";")[0] for line in lines] == [
        f"retry {n}/7 of GET manifest x at registry.test: connection reset (connection dropped)"
        for n in (1, 2, 3)]


def test_out_of_attempts_the_last_answer_or_error_goes_back_for_the_caller_to_word():
    answers = _Flaky(10, "503")
    assert _call(answers, policy=Policy(attempts=3)) == "503" and answers.calls == 3
    errors = _Flaky(10, ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError):
        _call(errors, policy=Policy(attempts=3))
    assert errors.calls == 3


def test_a_failure_that_is_not_transient_is_never_retried():
    sleeps = []
    refused = _Flaky(1, PermissionError("denied"))
    with pytest.raises(PermissionError):
        _call(refused, sleeps=sleeps)
    assert refused.calls == 1
    not_found = _Flaky(1, "404")
    assert _call(not_found, sleeps=sleeps) == "404" and not_found.calls == 1
    assert sleeps == []
    # A Dockerfile step's failure is a StepFailed: whatever its text says, it is not the
    # registry's transient failure (only a RegistryFailed carries one).
    step = StepFailed("step 3/5 (RUN wget …) failed with exit code 4: connection reset by peer",
                      step="step 3/5", exit_code=4)
    assert engineapi._retryable(step) is None
    pushed = RegistryFailed("pushing x failed: EOF", transient=engineapi.registry_failure("EOF"))
    assert engineapi._retryable(pushed).kind is Kind.DROPPED


class _Registry:
    """A registry holding `digests`; the manifest HEADs asked of it, in `asked`."""

    def __init__(self, *digests: str) -> None:
        self.registry, self.digests, self.asked = "registry.test", digests, []

    def head_manifest(self, repository: str, reference: str):
        self.asked.append((repository, reference))
        return Descriptor("application/vnd.oci.image.manifest.v1+json", reference, 400) \
            if reference in self.digests else None


def test_an_engine_finding_no_base_is_believed_only_if_the_registry_has_none_either():
    digest = "sha256:" + "f" * 64
    base, engine = f"registry.test/library/busybox@{digest}", Engine("modern", "unix://x", ())
    said = f'failed to resolve reference "{base}": {base}: not found'
    served = _Registry(digest)
    lost = engineapi._pull_failed(engine, base, said, served)
    assert served.asked == [("library/busybox", digest)]
    assert lost.transient == Transient(Kind.DROPPED, "the engine found no such image, but "
                                                     "registry.test serves it")
    missing = engineapi._pull_failed(engine, base, said, _Registry())
    assert missing.transient is None and str(missing) == (
        f"engine modern cannot pull the base image {base}: registry.test has no such image "
        f"({said}); push it there, or pin the base to a digest it serves")
    unasked = _Registry(digest)
    bad_gateway = engineapi._pull_failed(engine, base, "unexpected status: 502 Bad Gateway",
                                         unasked)
    assert bad_gateway.transient.kind is Kind.SERVER_ERROR and unasked.asked == []


def test_a_cancelled_scope_ends_the_wait_and_starts_no_retry():
    cancelled = threading.Event()
    cancelled.set()
    operation = _Flaky(5, "503")
    with retry.scope(lambda line: None, cancelled), \
            pytest.raises(BuilderError, match=r"^interrupted while waiting to retry GET manifest x "
                                              r"\(HTTP 503\)$"):
        retry.call(operation, _classify, host="registry.test", what="GET manifest x",
                   account=Budget("registry.test", 10))
    assert operation.calls == 1


def test_the_budget_is_shared_by_threads_and_when_spent_fails_with_its_own_error():
    account = Budget("registry.test", 5)
    failures: list[BaseException] = []

    def worker():
        try:
            _call(_Flaky(100, "503"), policy=Policy(attempts=100), account=account)
        except BaseException as error:  # noqa: B902 - collected for the assertion below
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert account.spent == 5
    assert len(failures) == 4 and all(isinstance(f, RetryBudgetSpent) for f in failures)
    assert str(failures[0]) == (
        "registry registry.test: GET manifest x: HTTP 503 (server error), and the 5 retries "
        "this run allows that registry are spent; it fails too often: check it, then run again "
        "(what went through is kept)")


def test_the_registry_client_and_the_engine_text_classify_into_kinds():
    cut = requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(3 bytes read)")
    assert transient(cut).kind is Kind.DROPPED
    assert transient(ConnectionResetError(104, "Connection reset by peer")).kind is Kind.DROPPED
    assert transient(requests.exceptions.ReadTimeout("read timed out")).kind is Kind.TIMEOUT
    assert transient(requests.exceptions.SSLError("certificate verify failed")) is None
    for status, kind in ((429, Kind.RATE_LIMITED), (502, Kind.SERVER_ERROR), (404, None), (401, None)):
        answer = requests.Response()
        answer.status_code, answer.headers["Retry-After"] = status, "1"
        found = transient(answer)
        assert (found.kind if found else None) is kind
        if found:
            assert found.retry_after == 1.0
    for text, kind in (("received unexpected HTTP status: 502 Bad Gateway", Kind.SERVER_ERROR),
                       ("toomanyrequests: injected: slow down", Kind.RATE_LIMITED),
                       ('error parsing HTTP 429 response body: unexpected end of JSON input: ""',
                        Kind.RATE_LIMITED),
                       ('Put "http://127.0.0.1:5/v2/x/manifests/y": EOF', Kind.DROPPED),
                       ("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer",
                        Kind.DROPPED),
                       ("net/http: TLS handshake timeout", Kind.TIMEOUT),
                       ("manifest unknown: manifest unknown", None),
                       ("unauthorized: authentication required", None)):
        found = engineapi.registry_failure(text)
        assert (found.kind if found else None) is kind, text
