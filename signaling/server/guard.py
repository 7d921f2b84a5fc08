"""aiohttp glue of access control: Host check (DNS rebinding) and Origin allow-list + CORS
middlewares, per-IP rate limits, bounded body reads, API key extraction, and an access log that
never writes a query string (tokens live there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from signaling.ice import is_loopback_host
from signaling.server.auth import AccessPolicy, HostPolicy
from signaling.server.ratelimit import RateLimiter

__all__ = [
    "RedactedAccessLogger",
    "body_timed_out",
    "client_ip",
    "host_middleware",
    "is_loopback_peer",
    "origin_middleware",
    "presented_key",
    "rate_limited",
    "read_body",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CORS_HEADERS = "Content-Type, Authorization, X-API-Key"
_OPEN_PATHS = ("/health/", "/metrics")  # probes and scrapers: no browser origin rules


def client_ip(request: web.Request) -> str:
    """The TCP peer's address (proxies' forwarding headers are not trusted)."""
    return request.remote or "unknown"


def is_loopback_peer(request: web.Request) -> bool:
    return is_loopback_host(client_ip(request))


def presented_key(request: web.Request) -> str | None:
    """The API key from ``Authorization: Bearer KEY`` or ``X-API-Key``, if any."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def rate_limited(limiter: RateLimiter, request: web.Request) -> web.Response | None:
    """A 429 answer when the client's bucket is empty (a token is spent otherwise)."""
    wait = limiter.check(client_ip(request), time.monotonic())
    if wait <= 0:
        return None
    return web.json_response(
        {"error": "too many requests; slow down"},
        status=429,
        headers={"Retry-After": str(max(1, int(wait + 0.999)))},
    )


async def read_body(request: web.Request, *, timeout_s: float) -> bytes | None:
    """The request's body, or None when it did not arrive within ``timeout_s``."""
    try:
        return await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        return None


def body_timed_out() -> web.Response:
    """408 for a body that came too slowly; the connection is closed after it."""
    response = web.json_response({"error": "request body too slow"}, status=408)
    response.force_close()
    return response


def host_middleware(policy: HostPolicy) -> Middleware:
    """Refuse requests whose ``Host`` names a site this server is not (421): a page of
    another site that made its name resolve to this server (DNS rebinding)."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not policy.allows(request.headers.get("Host")):
            reason = "unknown Host; list this server's public names in access.public_hosts"
            return web.json_response({"error": reason}, status=421)
        return await handler(request)

    return check_host


def origin_middleware(policy: AccessPolicy, *, loopback_server: bool) -> Middleware:
    """Refuse cross-origin requests from pages not on the allow-list (403), answer CORS
    preflights for listed ones, and set ``frame-ancestors`` so only listed pages embed us."""
    ancestors = " ".join(["'self'", *sorted(policy.allowed_origins)])

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cross = False
        if origin is not None and not request.path.startswith(_OPEN_PATHS):
            if not policy.origin_allowed(origin, request.host, loopback_server=loopback_server):
                return web.json_response({"error": "origin not allowed"}, status=403)
            cross = True
        if request.method == "OPTIONS" and cross:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if cross and origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        page = request.path == "/" or request.path.endswith(".html")
        if page and not response.prepared:
            response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
        return response

    return guard


class RedactedAccessLogger(AbstractAccessLogger):
    """``client "METHOD /path" status bytes seconds``: no query string, no headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3f',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )
