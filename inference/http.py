"""A small HTTP/1.1 client on asyncio streams, for the adapters of OpenAI-compatible services.

``inference/`` stays free of aiohttp (DESIGN: it is transport-free), so the service adapters
talk HTTP through this module: one connection per request (``Connection: close``), bodies
by ``Content-Length``, chunked transfer coding or end of stream, ``https`` through the
standard ``ssl`` module. Every wait has a deadline: connecting, the first byte of the
response (the service's thinking time), and each later read (a stalled stream).

    async with open_request("POST", url, json_body={...}, timeouts=t) as resp:
        resp.raise_for_status()
        async for line in resp.lines(): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "HttpError",
    "HttpResponse",
    "HttpStatusError",
    "HttpTimeout",
    "HttpTimeouts",
    "open_request",
]

_MAX_HEADER_BYTES = 64 * 1024
_MAX_ERROR_BODY = 4096


class HttpError(ConnectionError):
    """The request failed in transport: refused, reset, cut short or malformed."""


class HttpTimeout(HttpError):
    """A deadline passed (``stage`` says which: connect, first_byte, read)."""

    def __init__(self, stage: str, seconds: float) -> None:
        super().__init__(f"HTTP {stage} timeout after {seconds:g} s")
        self.stage = stage


class HttpStatusError(HttpError):
    """The service answered with a non-2xx status."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        text = body[:300].decode("utf-8", "replace")
        super().__init__(f"HTTP {status} {reason}: {text}")
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """True for overload and server errors (429, 5xx), which a retry may cure."""
        return self.status == 429 or self.status >= 500


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTimeouts:
    """Deadlines in seconds: ``connect``, ``first_byte`` (request sent → status line) and
    ``read`` (between any two later reads)."""

    connect_s: float = 3.0
    first_byte_s: float = 10.0
    read_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "first_byte_s", "read_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class HttpResponse:
    """The status, headers and streamed body of one response (read once)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        status: int,
        reason: str,
        headers: dict[str, str],
        read_s: float,
    ) -> None:
        self._reader = reader
        self.status = status
        self.reason = reason
        self.headers = headers
        self._read_s = read_s

    async def _read(self, op: Any) -> Any:
        try:
            async with asyncio.timeout(self._read_s):
                return await op
        except TimeoutError:
            raise HttpTimeout("read", self._read_s) from None
        except asyncio.IncompleteReadError as exc:
            raise HttpError("connection closed in the middle of the response body") from exc
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, HttpError):
                raise
            raise HttpError(f"connection lost while reading: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer coding removed)."""
        encoding = self.headers.get("transfer-encoding", "").lower()
        if "chunked" in encoding:
            async for piece in self._chunked():
                yield piece
            return
        length = self.headers.get("content-length")
        if length is not None:
            try:
                left = int(length)
            except ValueError:
                raise HttpError(f"malformed Content-Length {length!r}") from None
            while left > 0:
                piece = await self._read(self._reader.read(min(left, 65536)))
                if not piece:
                    raise HttpError(f"connection closed with {left} body bytes missing")
                left -= len(piece)
                yield piece
            return
        while piece := await self._read(self._reader.read(65536)):
            yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            line = await self._read(self._reader.readuntil(b"\r\n"))
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"malformed chunk size {size_text[:20]!r}") from None
            if size == 0:
                while (await self._read(self._reader.readuntil(b"\r\n"))) != b"\r\n":
                    pass  # trailers
                return
            data = await self._read(self._reader.readexactly(size + 2))
            if data[-2:] != b"\r\n":
                raise HttpError("malformed chunk: no CRLF after the data")
            yield data[:-2]

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (HttpError past ``limit`` bytes)."""
        parts: list[bytes] = []
        size = 0
        async for piece in self.chunks():
            size += len(piece)
            if size > limit:
                raise HttpError(f"response body larger than {limit} bytes")
            parts.append(piece)
        return b"".join(parts)

    async def json(self) -> Any:
        body = await self.read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise HttpError(f"response is not JSON: {body[:100]!r}") from exc

    async def lines(self) -> AsyncIterator[str]:
        """The body as text lines (UTF-8, without line endings), for server-sent events."""
        buf = b""
        async for piece in self.chunks():
            buf += piece
            *complete, buf = buf.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if buf:
            yield buf.rstrip(b"\r").decode("utf-8", "replace")

    async def raise_for_status(self) -> None:
        """HttpStatusError (with the start of the body) unless the status is 2xx."""
        if 200 <= self.status < 300:
            return
        body = b""
        with contextlib.suppress(HttpError):
            body = await self.read(limit=1 << 20)
        raise HttpStatusError(self.status, self.reason, body[:_MAX_ERROR_BODY])


def _encode_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, int, bool, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s)://host[:port]/path URL, got {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parts.hostname, port, tls, head + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise HttpError("connection closed before a complete response head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError("response head too large") from exc
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise HttpError(f"malformed status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(fields[1]), fields[2] if len(fields) > 2 else "", headers


@contextlib.asynccontextmanager
async def open_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    json_body: Any = None,
    timeouts: HttpTimeouts | None = None,
) -> AsyncIterator[HttpResponse]:
    """Send one request; yield the response once its head arrived; close on exit."""
    t = timeouts or HttpTimeouts()
    hdrs = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    host, port, tls, payload = _encode_request(method, url, hdrs, body)
    try:
        async with asyncio.timeout(t.connect_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if tls else None,
                limit=_MAX_HEADER_BYTES,
            )  # fmt: skip
    except TimeoutError:
        raise HttpTimeout("connect", t.connect_s) from None
    except OSError as exc:
        raise HttpError(f"cannot connect to {host}:{port}: {exc}") from exc
    try:
        try:
            writer.write(payload)
            async with asyncio.timeout(t.first_byte_s):
                await writer.drain()
                status, reason, resp_headers = await _read_head(reader)
        except TimeoutError:
            raise HttpTimeout("first_byte", t.first_byte_s) from None
        except OSError as exc:
            if isinstance(exc, HttpError):
                raise
            raise HttpError(f"connection to {host}:{port} lost: {exc}") from exc
        yield HttpResponse(reader, status, reason, resp_headers, t.read_s)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
