"""A plain round-robin reverse proxy on 127.0.0.1, for tests of several media nodes.

It knows nothing about sessions: each request (HTTP or a WebSocket upgrade) goes to the next
backend in turn, as a dumb load balancer does. WebSocket messages and close codes are relayed
both ways. ``routes`` records ``(method, path, backend index)`` of every request.

    async with RoundRobinProxy(["http://127.0.0.1:8081", "http://127.0.0.1:8082"]) as proxy:
        ...  # proxy.url
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import aiohttp
from aiohttp import WSMsgType, web

__all__ = ["RoundRobinProxy"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)


class RoundRobinProxy:
    def __init__(self, backends: Sequence[str], *, host: str = "127.0.0.1") -> None:
        if not backends:
            raise ValueError("RoundRobinProxy needs at least one backend")
        self.backends = [b.rstrip("/") for b in backends]
        self.host = host
        self.routes: list[tuple[str, str, int]] = []
        self._turn = itertools.cycle(range(len(self.backends)))
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> RoundRobinProxy:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._client = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def _next(self, request: web.Request) -> str:
        index = next(self._turn)
        self.routes.append((request.method, request.path, index))
        return self.backends[index]

    def _headers(self, request: web.Request) -> dict[str, str]:
        out = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        out["Host"] = request.host  # passed unchanged, as a proxy in front of a site does
        return out

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        backend = self._next(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, backend)
        body = await request.read()
        try:
            async with self._client.request(
                request.method,
                backend + request.raw_path,
                data=body,
                headers=self._headers(request),
                allow_redirects=False,
            ) as answer:
                data = await answer.read()
                headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=data, headers=headers)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"proxy: backend {backend} failed: {exc}")

    async def _websocket(self, request: web.Request, backend: str) -> web.StreamResponse:
        assert self._client is not None
        try:
            upstream = await self._client.ws_connect(
                backend + request.raw_path, headers=self._headers(request), max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text="proxy: upgrade refused")
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"proxy: backend {backend} failed: {exc}")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)

        async def up() -> None:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await upstream.send_bytes(msg.data)

        tasks = {asyncio.create_task(down()), asyncio.create_task(up())}
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if upstream.closed:
            await ws.close(code=_code(upstream.close_code))
        else:
            await upstream.close(code=_code(ws.close_code))
        return ws


def _code(code: int | None) -> int:
    return code if code is not None and code not in (1005, 1006) else 1001
