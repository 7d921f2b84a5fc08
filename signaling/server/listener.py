"""The TCP listener: caps on open connections (in total and per client IP) and the timeouts
that close idle and half-sent connections (the policy: README, Access and security)."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import ssl
from collections import Counter
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["ConnectionLimits", "Listening", "descriptor_cap", "open_connections", "start_server"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """``idle_timeout_s``: a connection that has not sent a complete request head this long
    after opening or after its last response is closed (idle, or headers sent slowly);
    ``linger_s``: how long an unread request body is drained after the response."""

    max_connections: int = 512
    max_per_ip: int = 32
    idle_timeout_s: float = 20.0
    linger_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_per_ip < 1:
            raise ValueError("ConnectionLimits: the connection caps must be at least 1")
        if self.idle_timeout_s <= 0 or self.linger_s < 0:
            raise ValueError("ConnectionLimits: idle_timeout_s > 0 and linger_s >= 0 needed")


def descriptor_cap(max_connections: int) -> int:
    """``max_connections``, lowered to half the process's descriptor limit (the rest stays
    for calls' media sockets, files and the listener itself)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft // 2))


def _peer_ip(transport: asyncio.BaseTransport | None) -> str | None:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def open_connections(server: web.Server) -> Counter[str]:
    """Open connections of ``server`` by client IP."""
    return Counter(
        ip for handler in server.connections if (ip := _peer_ip(handler.transport)) is not None
    )


def _refusal(reason: str) -> bytes:
    body = json.dumps({"error": reason}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 5\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Gatekeeper(asyncio.Protocol):
    """Admits a new connection (hands the transport to aiohttp's handler) or answers 503
    and closes it, before anything of it is read."""

    def __init__(self, server: web.Server, limits: ConnectionLimits, cap: int) -> None:
        self._server = server
        self._limits = limits
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        reason = self._refused(_peer_ip(transport))
        if reason is not None:
            transport.write(_refusal(reason))
            transport.close()
            return
        handler = self._server()
        transport.set_protocol(handler)
        handler.connection_made(transport)

    def _refused(self, ip: str | None) -> str | None:
        counts = open_connections(self._server)
        if counts.total() >= self._cap:
            log.warning("refused a connection: %d open connections (the cap)", self._cap)
            return "server is busy: too many connections"
        if ip is not None and counts[ip] >= self._limits.max_per_ip:
            log.info("refused a connection of %s: %d open (the per-IP cap)", ip, counts[ip])
            return "too many connections from this address"
        return None


@dataclass
class Listening:
    """A running server: its aiohttp runner and the listening socket(s)."""

    runner: web.AppRunner
    listener: asyncio.Server

    @property
    def port(self) -> int:
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, then close every connection and run the app's shutdown."""
        self.listener.close()
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    access_log_class: type[AbstractAccessLogger],
    ssl_context: ssl.SSLContext | None = None,
) -> Listening:
    """Start ``app`` on ``host:port`` behind the connection caps and timeouts (HTTPS with
    ``ssl_context``: a TLS handshake must finish within ``idle_timeout_s``)."""
    runner = web.AppRunner(
        app,
        access_log_class=access_log_class,
        keepalive_timeout=limits.idle_timeout_s,
        lingering_time=limits.linger_s,
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    cap = descriptor_cap(limits.max_connections)
    if cap < limits.max_connections:
        log.warning("max_connections lowered to %d (half the descriptor limit)", cap)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            lambda: _Gatekeeper(server, limits, cap),
            host,
            port,
            ssl=ssl_context,
            ssl_handshake_timeout=limits.idle_timeout_s if ssl_context is not None else None,
        )
    except BaseException:
        await runner.cleanup()
        raise
    return Listening(runner=runner, listener=listener)
