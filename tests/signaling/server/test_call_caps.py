"""Call slots: per-IP and per-key caps, and a deadline for offers whose media never connects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.ice import enable_loopback_candidates
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
KIOSK_KEY = "kiosk-key-0123456789"
BACKEND_KEY = "backend-key-0123456789"


def with_access(settings: Settings, **access: object) -> Settings:
    return settings.model_copy(
        update={"max_sessions": 4, "access": settings.access.model_copy(update=access)}
    )


async def test_one_address_holds_at_most_its_calls(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    url = await serve(create_app(with_access(settings, max_calls_per_ip=1), services=fake_services))
    async with ProbeCall(ProbeOptions(url=url)) as call:
        with pytest.raises(OfferRefused) as refused:
            await ProbeCall(ProbeOptions(url=url)).connect()
        assert refused.value.status == 429 and "from this address" in refused.value.reason
        assert refused.value.retry_after is not None
        await call.resume()  # a resume is the same call, not a new one


async def test_a_key_holds_at_most_its_calls(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    keys = [
        {"name": "kiosk", "key": KIOSK_KEY, "max_calls": 1},
        {"name": "backend", "key": BACKEND_KEY},
    ]
    access = Settings.model_validate({"access": {"keys": keys}}).access
    app = create_app(with_access(settings, keys=access.keys), services=fake_services)
    url = await serve(app)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/session", headers={"X-API-Key": KIOSK_KEY}) as r:
            token = (await r.json())["token"]
    async with ProbeCall(ProbeOptions(url=url, api_key=KIOSK_KEY)):
        with pytest.raises(OfferRefused) as refused:
            async with ProbeCall(ProbeOptions(url=url, token=token)):
                pass
        assert refused.value.status == 429 and "under this key" in refused.value.reason
        assert refused.value.retry_after is not None
        async with ProbeCall(ProbeOptions(url=url, api_key=BACKEND_KEY)):
            pass  # other keys are not held back
    await wait_until(lambda: not app[STATE].sessions)
    async with ProbeCall(ProbeOptions(url=url, token=token)):  # the refusal did not spend it
        pass


async def wait_until(done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not done within {timeout_s} s")


async def test_an_offer_that_never_connects_frees_its_slot(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(with_access(settings, connect_timeout_s=1.0), services=fake_services)
    url = await serve(app)
    state = app[STATE]
    enable_loopback_candidates()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with http.post(url + "/offer", json=body) as r:
            assert r.status == 200, await r.text()
            session = state.sessions[(await r.json())["session"]]
    await pc.close()  # it never answers the server's checks
    await wait_until(lambda: not state.sessions, timeout_s=3.0)  # heartbeat_timeout_s is 5
    assert "connect timeout" in session.close_reason
    async with ProbeCall(ProbeOptions(url=url)) as call:  # a call that connects is kept
        await call.wait_connected()
        await asyncio.sleep(1.5)
        assert call.session_id in state.sessions
