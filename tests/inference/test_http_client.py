"""The small HTTP/1.1 client: body framings, timeouts, malformed answers (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from inference.http import HttpError, HttpStatusError, HttpTimeout, HttpTimeouts, open_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/x"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _answer(raw: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handler


async def _body(url: str, t: HttpTimeouts | None = None) -> bytes:
    async with open_request("POST", url, json_body={"a": 1}, timeouts=t) as resp:
        await resp.raise_for_status()
        return await resp.read()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server, url = await _serve(handler)
        servers.append(server)
        return url

    yield start
    for s in servers:
        s.close()


async def test_content_length_and_request_shape(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    url = await serve(handler)
    assert await _body(url) == b"hello"
    assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in seen[0]
    assert seen[0].endswith(b'{"a": 1}')


async def test_chunked_body_and_lines(serve: Callable[[Handler], Awaitable[str]]) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nline1\n\r\n8;ext=1\r\nline2\r\nl\r\n4\r\nast\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    url = await serve(_answer(raw))
    async with open_request("GET", url) as resp:
        lines = [line async for line in resp.lines()]
    assert lines == ["line1", "line2", "last"]


async def test_status_error_carries_body(serve: Callable[[Handler], Awaitable[str]]) -> None:
    url = await serve(_answer(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nfull"))
    with pytest.raises(HttpStatusError, match="503 Busy: full") as info:
        await _body(url)
    assert info.value.retryable
    url = await serve(_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    with pytest.raises(HttpStatusError) as info2:
        await _body(url)
    assert not info2.value.retryable


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"garbage\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "missing"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed"),
        (b"HTTP/1.1 200 OK\r\n", "response head"),
    ],
)
async def test_malformed_answers(
    serve: Callable[[Handler], Awaitable[str]], raw: bytes, needle: str
) -> None:
    url = await serve(_answer(raw))
    with pytest.raises(HttpError, match=needle):
        await _body(url)


async def test_first_byte_and_read_timeouts(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(1.0)
        writer.close()

    async def stalled_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(1.0)
        writer.close()

    t = HttpTimeouts(first_byte_s=0.1, read_s=0.1)
    with pytest.raises(HttpTimeout, match="first_byte"):
        await _body(await serve(slow_head), t)
    with pytest.raises(HttpTimeout, match="read"):
        await _body(await serve(stalled_body), t)


async def test_connection_refused_and_bad_url() -> None:
    server, url = await _serve(_answer(b""))
    server.close()
    await server.wait_closed()
    with pytest.raises(HttpError, match="cannot connect"):
        await _body(url)
    with pytest.raises(ValueError, match="http"):
        await _body("ftp://127.0.0.1/x")
