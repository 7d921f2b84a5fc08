"""Resume storms: how often a call may move to a new peer connection, and how many such
moves may be under way at once, per call and per client IP.

A resume (``/offer`` with ``session`` + its token; docs/protocol.md) builds a new peer
connection: a certificate, ICE gathering, a DTLS handshake, a new encoder and its keyframes.
Unchecked, one client holding a session token can make the server do that many times a
second. :class:`ResumeGuard` admits a resume only while

- the call's token bucket has a token (``per_call_per_s``, burst ``per_call_burst``);
- the client IP's bucket has one (the per-call rate times the calls an IP may hold);
- no other resume of the same call is being negotiated, and the IP has fewer than
  ``per_ip_in_flight`` under way.

A refused resume gets ``429`` and ``Retry-After``; the call goes on (on its old peer
connection, if that one still works) and may resume once the wait is over.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from signaling.config import Settings
from signaling.server.ratelimit import RateLimiter, RateLimitOptions

__all__ = ["RESUMES", "ResumeGuard", "ResumeLimits", "ResumeRefused", "resume_limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeLimits:
    """``per_call_per_s`` resumes a second per call, up to ``per_call_burst`` at once; an IP
    gets ``per_ip_calls`` times that; ``per_ip_in_flight`` resumes negotiated at once per IP
    (one per call in any case); ``max_keys`` bounds the tables."""

    per_call_per_s: float = 0.2
    per_call_burst: int = 3
    per_ip_calls: int = 4
    per_ip_in_flight: int = 4
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if not self.per_call_per_s > 0:
            raise ValueError(f"per_call_per_s must be positive, got {self.per_call_per_s}")
        if min(self.per_call_burst, self.per_ip_calls, self.per_ip_in_flight, self.max_keys) < 1:
            raise ValueError("per_call_burst, per_ip_calls, per_ip_in_flight must be >= 1")


def resume_limits(settings: Settings) -> ResumeLimits:
    """The resume limits the settings describe (``access.resumes_per_s``, ...)."""
    a = settings.access
    return ResumeLimits(
        per_call_per_s=a.resumes_per_s,
        per_call_burst=a.resume_burst,
        per_ip_calls=a.max_calls_per_ip,
        per_ip_in_flight=a.max_calls_per_ip,
        max_keys=max(64, 4 * settings.max_sessions),
    )


class ResumeRefused(Exception):
    """A resume that must wait ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        """The ``429`` answer, with ``Retry-After`` in whole seconds (at least 1)."""
        wait = str(max(1, math.ceil(self.retry_after_s)))
        return web.json_response({"error": self.reason}, status=429, headers={"Retry-After": wait})


class ResumeGuard:
    """The resume limits of one server process (see the module docstring). Not thread-safe:
    used from the event loop only; times are monotonic seconds passed in."""

    def __init__(self, limits: ResumeLimits) -> None:
        self.limits = limits
        self._calls = RateLimiter(
            RateLimitOptions(
                rate_per_s=limits.per_call_per_s,
                burst=limits.per_call_burst,
                max_keys=limits.max_keys,
            )
        )
        self._ips = RateLimiter(
            RateLimitOptions(
                rate_per_s=limits.per_call_per_s * limits.per_ip_calls,
                burst=limits.per_call_burst * limits.per_ip_calls,
                max_keys=limits.max_keys,
            )
        )
        self._calls_in_flight: set[str] = set()
        self._ips_in_flight: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self, session_id: str, ip: str, now: float) -> Iterator[None]:
        """Hold a resume of ``session_id`` from ``ip`` while the block runs; raises
        :class:`ResumeRefused` when a limit says no."""
        if session_id in self._calls_in_flight:
            raise ResumeRefused("a resume of this call is already under way", 1.0)
        if self._ips_in_flight.get(ip, 0) >= self.limits.per_ip_in_flight:
            raise ResumeRefused("too many resumes under way from this address", 1.0)
        wait = self._calls.check(session_id, now)
        if wait > 0:
            rate = self.limits.per_call_per_s
            raise ResumeRefused(
                f"too many resumes of this call: at most {rate:g} a second; the call goes on, "
                f"resume again in {wait:.1f} s",
                wait,
            )
        wait = self._ips.check(ip, now)
        if wait > 0:
            raise ResumeRefused(f"too many resumes from this address; retry in {wait:.1f} s", wait)
        self._calls_in_flight.add(session_id)
        self._ips_in_flight[ip] = self._ips_in_flight.get(ip, 0) + 1
        try:
            yield
        finally:
            self._calls_in_flight.discard(session_id)
            left = self._ips_in_flight[ip] - 1
            if left:
                self._ips_in_flight[ip] = left
            else:
                del self._ips_in_flight[ip]

    def in_flight(self, ip: str) -> int:
        """Resumes from ``ip`` being negotiated now."""
        return self._ips_in_flight.get(ip, 0)


RESUMES: web.AppKey[ResumeGuard] = web.AppKey("avatar_rtc_resumes", ResumeGuard)
