"""State the media nodes of one site share through Redis (``cluster.shared_state``).

Behind one address a client's requests reach any node, so what must hold for the whole
site cannot live in one process. Today that is the single use of access tokens: a token
spent on one node is refused on every other (``RedisSpentTokens``, one ``SET NX EX`` per
spend, so two nodes racing for the same token cannot both win). Without
``cluster.shared_state`` each node keeps its own :class:`~signaling.server.auth.SpentTokens`
and nothing here is imported or contacted.

Redis not answering is an outside fault, not the client's: the spend is refused with 503
and a reason that says so (a token must not start a second call because Redis was down).
"""

from __future__ import annotations

import hashlib
import math

import redis

from signaling.server.auth import AuthError, Grant

__all__ = ["RedisSpentTokens", "check_shared_state"]

_TIMEOUT_S = 0.5  # a spend waits at most this long for Redis (it runs on the event loop)


class RedisSpentTokens:
    """Spent tokens in Redis, shared by every media node that names the same ``url``
    (a :class:`~signaling.server.auth.TokenLedger`)."""

    def __init__(self, url: str, *, prefix: str = "avatar-rtc:spent:") -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
        )
        self._prefix = prefix

    def spend(self, grant: Grant, *, now: float) -> None:
        # the key is a digest of the token's id: bounded length, nothing a client chose raw
        key = self._prefix + hashlib.sha256(grant.id.encode()).hexdigest()[:32]
        ttl_s = max(1, math.ceil(grant.expires - now) + 1)  # kept until the token expires
        try:
            first = self._client.set(key, b"1", nx=True, ex=ttl_s)
        except redis.RedisError as exc:
            raise AuthError(
                f"the shared state (Redis) did not answer, so no token can be spent now: "
                f"{type(exc).__name__}",
                status=503,
            ) from None
        if not first:
            raise AuthError("access token already used; ask POST /session for a new one")

    def close(self) -> None:
        self._client.close()


def check_shared_state(url: str) -> str | None:
    """None when Redis at ``url`` answers a PING, else why not (for ``preflight``)."""
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        return f"cluster.shared_state: Redis at {url!r} does not answer ({exc})"
    finally:
        client.close()
    return None
