"""Resilience for calls to remote services: retries with backoff and jitter, a circuit breaker.

- :func:`backoff_delay` is the pure schedule: exponential, capped, with "equal jitter"
  (half fixed, half random) so retries of many calls spread out.
- :func:`retry` runs an idempotent coroutine up to ``attempts`` times while it fails with a
  retryable error, sleeping the schedule in between, and consults a breaker if given.
- :class:`CircuitBreaker` fails fast after ``failure_threshold`` consecutive failures, for
  ``reset_after_s``; then lets one trial call through (half-open): success closes it, failure
  opens it again. It takes ``now`` as a parameter, so tests drive its time directly.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from inference.http import HttpError, HttpStatusError

__all__ = [
    "BreakerOptions",
    "CircuitBreaker",
    "CircuitOpenError",
    "RetryOptions",
    "ServiceUnavailable",
    "backoff_delay",
    "is_retryable",
    "retry",
]

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """A remote service could not answer (after retries, or its circuit is open)."""


class CircuitOpenError(ServiceUnavailable):
    """The circuit breaker is open: the call was not attempted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """``attempts`` in all (1 = no retry); delays grow ``base_delay_s · 2^n`` up to
    ``max_delay_s``, with ``jitter`` (0..1) of each delay randomized."""

    attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 20:
            raise ValueError(f"attempts must be within 1..20, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerOptions:
    """Open after ``failure_threshold`` consecutive failures; try again after ``reset_after_s``."""

    failure_threshold: int = 5
    reset_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.reset_after_s <= 0:
            raise ValueError(f"reset_after_s must be > 0, got {self.reset_after_s}")


def backoff_delay(retry_number: int, options: RetryOptions, rand: float) -> float:
    """Seconds to wait before retry ``retry_number`` (0-based); ``rand`` is uniform in [0, 1)."""
    if retry_number < 0:
        raise ValueError("retry_number must be >= 0")
    cap = min(options.max_delay_s, options.base_delay_s * (2.0**retry_number))
    return cap * (1.0 - options.jitter) + cap * options.jitter * rand


def is_retryable(exc: BaseException) -> bool:
    """Transport failures, timeouts, 429 and 5xx are worth a retry; other statuses are not."""
    if isinstance(exc, HttpStatusError):
        return exc.retryable
    return isinstance(exc, HttpError | TimeoutError | ConnectionError)


class CircuitBreaker:
    """Closed → open after consecutive failures → half-open after a pause → closed on success."""

    def __init__(self, options: BreakerOptions | None = None) -> None:
        self.options = options or BreakerOptions()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def state(self, now: float) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at >= self.options.reset_after_s:
            return "half_open"
        return "open"

    def allow(self, now: float) -> bool:
        """May a call go through now? In half-open only one trial call at a time does."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def record_success(self, now: float) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def record_failure(self, now: float) -> None:
        self._failures += 1
        if self._trial or self._failures >= self.options.failure_threshold:
            self._opened_at = now
        self._trial = False


async def retry(
    call: Callable[[], Awaitable[T]],
    options: RetryOptions,
    *,
    breaker: CircuitBreaker | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    now: Callable[[], float] = time.monotonic,
) -> T:
    """Await ``call()`` until it succeeds, retrying retryable failures (idempotent calls only).

    Raises CircuitOpenError when the breaker refuses, the last error otherwise. A failure that
    is not retryable is raised at once (and does not count against the breaker: the service
    answered, the request was bad).
    """
    for attempt in range(options.attempts):
        if breaker is not None and not breaker.allow(now()):
            raise CircuitOpenError("the service's circuit breaker is open")
        try:
            result = await call()
        except Exception as exc:
            if not retryable(exc):
                if breaker is not None:
                    breaker.record_success(now())
                raise
            if breaker is not None:
                breaker.record_failure(now())
            if attempt + 1 >= options.attempts:
                raise
            await sleep(backoff_delay(attempt, options, rand()))
            continue
        if breaker is not None:
            breaker.record_success(now())
        return result
    raise AssertionError("unreachable")  # pragma: no cover
