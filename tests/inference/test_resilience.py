"""Backoff schedule, retries of idempotent calls, the circuit breaker (driven time)."""

from __future__ import annotations

import pytest

from inference.http import HttpError, HttpStatusError
from inference.resilience import (
    BreakerOptions,
    CircuitBreaker,
    CircuitOpenError,
    RetryOptions,
    backoff_delay,
    is_retryable,
    retry,
)


def test_backoff_grows_caps_and_jitters() -> None:
    opts = RetryOptions(attempts=6, base_delay_s=0.1, max_delay_s=0.5, jitter=0.5)
    assert [backoff_delay(n, opts, 0.0) for n in range(4)] == pytest.approx([0.05, 0.1, 0.2, 0.25])
    assert [backoff_delay(n, opts, 1.0) for n in range(4)] == pytest.approx([0.1, 0.2, 0.4, 0.5])
    no_jitter = RetryOptions(base_delay_s=0.1, jitter=0.0)
    assert backoff_delay(1, no_jitter, 0.9) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="attempts"):
        RetryOptions(attempts=0)


def test_retryable_classification() -> None:
    assert is_retryable(HttpStatusError(500, "x", b""))
    assert is_retryable(HttpStatusError(429, "x", b""))
    assert not is_retryable(HttpStatusError(400, "x", b""))
    assert is_retryable(HttpError("reset"))
    assert is_retryable(TimeoutError())
    assert not is_retryable(ValueError())


async def test_retry_until_success_with_backoff() -> None:
    calls = 0
    slept: list[float] = []

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise HttpStatusError(503, "busy", b"")
        return "ok"

    async def sleep(s: float) -> None:
        slept.append(s)

    opts = RetryOptions(attempts=3, base_delay_s=0.1, jitter=0.0)
    assert await retry(flaky, opts, sleep=sleep) == "ok"
    assert calls == 3 and slept == pytest.approx([0.1, 0.2])


async def test_retry_gives_up_and_does_not_retry_client_errors() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise HttpError("refused")

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise HttpStatusError(400, "bad", b"")

    async def sleep(s: float) -> None:
        return None

    with pytest.raises(HttpError, match="refused"):
        await retry(down, RetryOptions(attempts=3), sleep=sleep)
    assert calls == 3
    calls = 0
    with pytest.raises(HttpStatusError):
        await retry(bad, RetryOptions(attempts=3), sleep=sleep)
    assert calls == 1


def test_breaker_opens_half_opens_and_closes() -> None:
    b = CircuitBreaker(BreakerOptions(failure_threshold=3, reset_after_s=10.0))
    for t in range(2):
        assert b.allow(t)
        b.record_failure(t)
    assert b.state(2) == "closed"
    b.record_failure(2)
    assert b.state(3) == "open" and not b.allow(3)
    assert b.state(12) == "half_open"
    assert b.allow(12)  # one trial
    assert not b.allow(12.1)  # the second waits for the trial
    b.record_failure(12.2)  # the trial failed: open again
    assert b.state(13) == "open" and not b.allow(21)
    assert b.allow(22.3)
    b.record_success(22.4)
    assert b.state(22.5) == "closed" and b.allow(22.5)


async def test_retry_refused_by_open_breaker() -> None:
    b = CircuitBreaker(BreakerOptions(failure_threshold=1, reset_after_s=100.0))
    b.record_failure(0.0)
    called = False

    async def call() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpenError):
        await retry(call, RetryOptions(), breaker=b, now=lambda: 1.0)
    assert not called
