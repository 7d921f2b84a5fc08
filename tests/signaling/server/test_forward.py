"""The forwarding middleware between two in-process nodes on 127.0.0.1: HTTP answers and
their headers come back from the owner, the caller's address travels signed, a relayed
control socket carries messages and close codes both ways, and a misconfigured node map is
reported instead of looping. (Real servers: test_media_nodes.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from signaling.config import load_settings
from signaling.server.forward import install_forwarding
from signaling.server.nodes import FORWARD_HEADER
from signaling.server.state import STATE, AppState
from tests.harness.spawn import free_port

SECRET = "forward-test-secret-0123456789"
CALLER = "127.0.0.2"  # the caller's address, distinct from the nodes' 127.0.0.1
ServerFactory = Callable[..., Awaitable[TestServer]]


def _node(node: str, nodes: dict[str, str], seen: list[tuple[Any, ...]]) -> web.Application:
    settings = load_settings(
        overrides={
            "cluster": {"node_id": node, "nodes": nodes, "forward_timeout_s": 2},
            "access": {"token_secret": SECRET},
        }
    )
    app = web.Application()
    app[STATE] = AppState(settings=settings)
    install_forwarding(app, settings)

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(("offer", node, request.remote, body.get("session")))
        return web.json_response({"node": node}, status=201, headers={"Retry-After": "7"})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        seen.append(("ws", node, request.remote))
        await socket.send_str(f"hello from {node}")
        async for msg in socket:
            if msg.data == "replace me":
                await socket.close(code=4409, message=b"replaced")
                break
            await socket.send_str(f"echo {msg.data}")
        seen.append(("ws closed", node, socket.close_code))
        return socket

    app.router.add_post("/offer", offer)
    app.router.add_get("/ws", ws)
    return app


@pytest.fixture
async def nodes(
    aiohttp_server: ServerFactory,
) -> tuple[str, list[tuple[Any, ...]]]:
    """Nodes a and b; a also lists c, which points back at a (a misconfiguration)."""
    ports = {"a": free_port(), "b": free_port()}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    seen: list[tuple[Any, ...]] = []
    await aiohttp_server(_node("a", {**urls, "c": urls["a"]}, seen), port=ports["a"])
    await aiohttp_server(_node("b", urls, seen), port=ports["b"])
    return urls["a"], seen


def _caller() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(CALLER, 0)))


async def test_a_resume_reaches_its_owner_with_the_callers_address(
    nodes: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, seen = nodes
    async with _caller() as http:
        async with http.post(url + "/offer", json={"session": "b_0123"}) as r:
            assert (r.status, await r.json()) == (201, {"node": "b"})
            assert r.headers["Retry-After"] == "7"
        async with http.post(url + "/offer", json={"sdp": "new call"}) as r:
            assert await r.json() == {"node": "a"}  # no session: answered where it lands
    assert seen == [("offer", "b", CALLER, "b_0123"), ("offer", "a", CALLER, None)]


async def test_a_relayed_socket_carries_messages_and_close_codes(
    nodes: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, seen = nodes
    async with _caller() as http:
        ws = await http.ws_connect(url + "/ws", params={"session": "b_1", "token": "t"})
        assert (await ws.receive_str(timeout=5)) == "hello from b"
        await ws.send_str("hi")
        assert (await ws.receive_str(timeout=5)) == "echo hi"
        await ws.close(code=1000)  # a hang-up reaches the owner as one
        ws = await http.ws_connect(url + "/ws", params={"session": "b_2", "token": "t"})
        assert (await ws.receive_str(timeout=5)) == "hello from b"
        await ws.send_str("replace me")
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and ws.close_code == 4409 and msg.extra == "replaced"
    for _ in range(50):
        if ("ws closed", "b", 1000) in seen:
            break
        await asyncio.sleep(0.05)
    assert ("ws", "b", CALLER) in seen and ("ws closed", "b", 1000) in seen
    assert ("ws closed", "b", 4409) in seen
    assert not [s for s in seen if s[1] == "a"]


async def test_a_forged_header_is_ignored_and_a_loop_is_reported(
    nodes: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, seen = nodes
    async with _caller() as http:
        forged = {FORWARD_HEADER: "v1;b;a;10.9.9.9;0;00"}
        async with http.post(url + "/offer", json={"sdp": "x"}, headers=forged) as r:
            assert r.status == 201
        async with http.post(url + "/offer", json={"session": "c_1"}) as r:
            answer = await r.json()
        assert r.status == 502 and "misconfigured cluster" in answer["error"], answer
        ws = await http.ws_connect(url + "/ws", params={"session": "c_1", "token": "t"})
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and ws.close_code == 4502
    assert seen == [("offer", "a", CALLER, None)]  # the forged address was not believed
