"""Per-client token buckets (pure: every method takes ``now``, monotonic seconds).

``RateLimiter`` keeps one bucket per key (a client IP, a session id) in a bounded LRU
table, so a flood of new keys cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateLimitOptions", "RateLimiter", "TokenBucket"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitOptions:
    """``rate_per_s`` tokens refill per second up to ``burst``; ``max_keys`` bounds the table."""

    rate_per_s: float
    burst: float
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ValueError(f"RateLimitOptions.rate_per_s must be positive, got {self.rate_per_s}")
        if not self.burst >= 1:
            raise ValueError(f"RateLimitOptions.burst must be >= 1, got {self.burst}")
        if self.max_keys < 1:
            raise ValueError(f"RateLimitOptions.max_keys must be >= 1, got {self.max_keys}")


class TokenBucket:
    """A classic token bucket: starts full, refills continuously."""

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, *, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens: 0.0 when allowed, else the seconds until it would be."""
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds the bucket's burst {self.burst}")
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate_per_s


class RateLimiter:
    """Token buckets by key, least recently used evicted past ``max_keys``."""

    def __init__(self, options: RateLimitOptions) -> None:
        self.options = options
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str, now: float, cost: float = 1.0) -> float:
        """0.0 when ``key`` may proceed (a token is spent), else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(
                rate_per_s=self.options.rate_per_s, burst=self.options.burst, now=now
            )
            self._buckets[key] = bucket
            while len(self._buckets) > self.options.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def forget(self, key: str) -> None:
        """Drop ``key``'s bucket (its session ended)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
