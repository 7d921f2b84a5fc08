"""The server's per-process state (``AppState``, held by the app under ``STATE``) and the
access rules the settings describe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from signaling.call.observers import CallObservers
from signaling.call.session import Session
from signaling.config import Settings
from signaling.metrics import Metrics
from signaling.server.auth import (
    AccessOptions,
    AccessPolicy,
    ApiKey,
    AuthError,
    HostPolicy,
    KeyScope,
)
from signaling.server.ratelimit import RateLimiter, RateLimitOptions
from signaling.stages.services import Services, load_services

__all__ = ["STATE", "AppState", "access_options"]


@dataclass
class AppState:
    """Per-process state of the server, held by the app (never a module global)."""

    settings: Settings
    services: Services | None = None
    load_error: str | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    loader: asyncio.Task[None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    load: Callable[[Settings], Awaitable[Services]] = load_services
    access: AccessPolicy = field(init=False)
    http_limiter: RateLimiter = field(init=False)
    turn_limiter: RateLimiter = field(init=False)  # per call: typed turns
    hosts: HostPolicy = field(init=False)
    scopes: dict[str, KeyScope] = field(default_factory=dict)
    peers: dict[str, str] = field(default_factory=dict)  # session id -> caller's IP
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    observers: CallObservers = field(default_factory=CallObservers)  # records, operators

    def __post_init__(self) -> None:
        a = self.settings.access
        shared = self.settings.cluster.shared_state
        if shared is not None:  # several media nodes: a token starts one call on any of them
            from signaling.server.shared import RedisSpentTokens

            self.access = AccessPolicy(
                access_options(self.settings), spent=RedisSpentTokens(shared)
            )
        else:
            self.access = AccessPolicy(access_options(self.settings))
        self.hosts = HostPolicy(
            bind_host=self.settings.host, public_hosts=frozenset(a.public_hosts)
        )
        self.http_limiter = RateLimiter(
            RateLimitOptions(rate_per_s=a.requests_per_s, burst=a.request_burst)
        )
        self.turn_limiter = RateLimiter(
            RateLimitOptions(
                rate_per_s=a.turns_per_s,
                burst=a.turn_burst,
                max_keys=2 * self.settings.max_sessions,
            )
        )

    def forget(self, session: Session) -> None:
        self.scopes.pop(session.id, None)
        self.peers.pop(session.id, None)
        self.turn_limiter.forget(session.id)
        if self.sessions.pop(session.id, None) is not None:
            self.metrics.active_sessions.set(len(self.sessions))

    @property
    def full(self) -> bool:
        return len(self.sessions) >= self.settings.max_sessions

    @property
    def ready(self) -> bool:
        return self.services is not None

    def check_ip_calls(self, ip: str) -> None:
        """AuthError (429) when ``ip`` already holds ``access.max_calls_per_ip`` calls."""
        cap = self.settings.access.max_calls_per_ip
        if sum(1 for peer in self.peers.values() if peer == ip) >= cap:
            raise AuthError(f"too many calls from this address (at most {cap})", status=429)

    def check_key_calls(self, scope: KeyScope) -> None:
        """AuthError (429) when ``scope``'s key already holds its ``max_calls``."""
        cap = self.access.max_calls(scope.name)
        if cap is not None and sum(1 for s in self.scopes.values() if s.name == scope.name) >= cap:
            raise AuthError(f"too many calls under this key (at most {cap})", status=429)


STATE: web.AppKey[AppState] = web.AppKey("avatar_rtc_state", AppState)


def access_options(settings: Settings) -> AccessOptions:
    """The access rules the settings describe (``api_key`` is an unscoped key "default")."""
    a = settings.access
    keys = [
        ApiKey(
            name=k.name,
            secret=k.key.get_secret_value(),
            avatars=frozenset(k.avatars) if k.avatars is not None else None,
            origins=frozenset(k.origins) if k.origins is not None else None,
            max_calls=k.max_calls,
        )
        for k in a.keys
    ]
    if settings.api_key is not None:
        keys.append(ApiKey(name="default", secret=settings.api_key.get_secret_value()))
    anonymous = a.anonymous if a.anonymous != "auto" else ("none" if keys else "loopback")
    secret = a.token_secret.get_secret_value().encode() if a.token_secret is not None else b""
    return AccessOptions(
        keys=tuple(keys),
        token_secret=secret,
        token_ttl_s=a.token_ttl_s,
        anonymous=anonymous,
        allowed_origins=frozenset(a.allowed_origins),
    )
