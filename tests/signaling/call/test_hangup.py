"""Hanging up ends every task of the call: the microphone ingest is never left pending,
also when the call ends before its media connected (the track then never ends by itself)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection

from signaling.call.session import Session
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]


def _ingest_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "MicIngest" in getattr(t.get_coro(), "__qualname__", "") and not t.done()
    ]


async def _wait_for_ingest() -> None:
    for _ in range(100):
        if _ingest_tasks():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call never started reading the microphone")


async def _connected_call(app: web.Application, url: str) -> Session:
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        await _wait_for_ingest()
        return app[STATE].sessions[call.session_id]


async def _unconnected_call(app: web.Application, url: str) -> Session:
    """An offer whose answer the caller never applies: the media never connects."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with aiohttp.ClientSession() as http, http.post(url + "/offer", json=offer) as r:
            assert r.status == 200, await r.text()
            session_id = (await r.json())["session"]
        await _wait_for_ingest()
        return app[STATE].sessions[session_id]
    finally:
        await pc.close()


@pytest.mark.parametrize("start", [_connected_call, _unconnected_call])
async def test_hang_up_ends_the_mic_ingest_task(
    settings: Settings,
    fake_services: Services,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
    start: Callable[[web.Application, str], Awaitable[Session]],
) -> None:
    app = create_app(settings, services=fake_services)
    session = await start(app, await serve(app))
    await session.close()
    assert _ingest_tasks() == []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del session
        gc.collect()
        await asyncio.sleep(0)
    assert "Task was destroyed but it is pending" not in caplog.text
