"""The listener's caps and timeouts, with raw sockets: idle, half-sent and crowding
connections are closed or refused while an honest client still gets through."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from signaling.config import Settings
from signaling.server.app import connection_limits, create_app
from signaling.server.guard import RedactedAccessLogger
from signaling.server.listener import ConnectionLimits, Listening, descriptor_cap, start_server
from signaling.stages.services import Services

Listen = Callable[[web.Application, ConnectionLimits], Awaitable[int]]
HONEST = "127.0.0.2"  # another client address on the loopback network (Linux routes 127/8)


@pytest.fixture
async def listen() -> AsyncIterator[Listen]:
    """``port = await listen(app, limits)``: the production listener on 127.0.0.1."""
    servers: list[Listening] = []

    async def start(app: web.Application, limits: ConnectionLimits) -> int:
        server = await start_server(
            app,
            host="127.0.0.1",
            port=0,
            limits=limits,
            access_log_class=RedactedAccessLogger,
        )
        servers.append(server)
        return server.port

    yield start
    for server in reversed(servers):
        await server.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """All the server sent before closing; fails if it is still open after ``seconds``."""
    data = b""
    async with asyncio.timeout(seconds):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(4096):
                data += chunk
    return data


async def connect_from(
    address: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def health_from(address: str, port: int) -> int:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://127.0.0.1:{port}/health/live") as r:
            return r.status


async def test_idle_and_half_sent_connections_are_closed(
    settings: Settings, fake_services: Services, listen: Listen
) -> None:
    port = await listen(
        create_app(settings, services=fake_services), ConnectionLimits(idle_timeout_s=1.0)
    )
    began = time.monotonic()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
    slow_writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(40):  # a header that never ends, one byte at a time
                await asyncio.sleep(0.1)
                slow_writer.write(b"a")
                await slow_writer.drain()

    trickling = asyncio.create_task(trickle())
    assert await closed_within(idle_reader, 3.0) == b""
    assert await closed_within(slow_reader, 3.0) == b""
    assert time.monotonic() - began < 3.0
    trickling.cancel()
    for writer in (idle_writer, slow_writer):
        writer.close()
    assert await health_from("127.0.0.1", port) == 200


async def test_a_slow_body_gets_408(
    settings: Settings, fake_services: Services, listen: Listen
) -> None:
    access = settings.access.model_copy(update={"body_timeout_s": 1.0})
    app = create_app(settings.model_copy(update={"access": access}), services=fake_services)
    port = await listen(app, ConnectionLimits(idle_timeout_s=5.0, linger_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    async def endless_body() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(60):
                writer.write(b"1\r\n \r\n")
                await writer.drain()
                await asyncio.sleep(0.1)

    sending = asyncio.create_task(endless_body())
    began = time.monotonic()
    answer = await closed_within(reader, 4.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert time.monotonic() - began < 4.0
    sending.cancel()
    writer.close()


async def test_connection_caps_refuse_quickly_and_honest_clients_get_in(
    settings: Settings, fake_services: Services, listen: Listen
) -> None:
    limits = ConnectionLimits(max_connections=6, max_per_ip=3, idle_timeout_s=10.0)
    port = await listen(create_app(settings, services=fake_services), limits)
    crowd = [await connect_from("127.0.0.1", port) for _ in range(3)]
    await asyncio.sleep(0.2)  # the server has accepted them
    began = time.monotonic()
    reader, writer = await connect_from("127.0.0.1", port)
    refused = await closed_within(reader, 1.0)
    assert refused.startswith(b"HTTP/1.1 503") and b"from this address" in refused
    assert time.monotonic() - began < 1.0
    writer.close()
    assert await health_from(HONEST, port) == 200  # another address is let in
    crowd += [await connect_from(HONEST, port) for _ in range(3)]
    await asyncio.sleep(0.2)
    reader, writer = await connect_from("127.0.0.3", port)
    assert b"too many connections" in await closed_within(reader, 1.0)  # the total cap
    writer.close()
    for _, w in crowd[:2]:
        w.close()
    await asyncio.sleep(0.2)
    assert await health_from("127.0.0.1", port) == 200  # room again
    for _, w in crowd[2:]:
        w.close()


def test_limits_from_settings() -> None:
    limits = connection_limits(Settings())
    assert (limits.max_connections, limits.max_per_ip, limits.idle_timeout_s) == (512, 32, 20.0)
    assert 1 <= descriptor_cap(10**9) < 10**9
    with pytest.raises(ValueError):
        ConnectionLimits(max_per_ip=0)
