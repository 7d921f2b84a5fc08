"""A reconnect storm stays in its call: resumes are rate-limited per call and per address,
one at a time per call, and a call never holds more than two open peer connections."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

import signaling.call.session as session_module
from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from signaling.client.misbehave import MisbehaveOptions, Misbehaver
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.server.resumes import ResumeGuard, ResumeLimits, ResumeRefused
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]


def _storm_settings(settings: Settings, **access: object) -> Settings:
    """The per-address request limit lifted: the resume limits are what is under test."""
    update = {"requests_per_s": 1000.0, "request_burst": 1000, **access}
    return settings.model_copy(update={"access": settings.access.model_copy(update=update)})


class _PeerCount:
    """The server's open peer connections (every one a call makes, counted through a
    subclass put in the session module's place), sampled every 10 ms; ``most``: the
    largest count seen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        made: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()

        class Counted(RTCPeerConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                made.add(self)

        monkeypatch.setattr(session_module, "RTCPeerConnection", Counted)
        self._made = made
        self.most = 0

    def now(self) -> int:
        return sum(1 for pc in list(self._made) if pc.connectionState != "closed")

    async def _run(self) -> None:
        while True:
            self.most = max(self.most, self.now())
            await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        task = asyncio.ensure_future(self._run())
        try:
            yield
        finally:
            task.cancel()


async def _raw_resume(call: ProbeCall, own: set[RTCPeerConnection]) -> int:
    """One resume offer from a fresh client peer connection, as a hostile client sends many
    at once: the status it got."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    own.add(pc)
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    body = {
        "sdp": pc.localDescription.sdp,
        "type": "offer",
        "session": call.session_id,
        "token": call.session_token,
    }
    try:
        await call._post("/offer", body)
        return 200
    except OfferRefused as exc:
        assert exc.status != 429 or exc.retry_after is not None
        return exc.status
    finally:
        await pc.close()


@pytest.mark.slow
async def test_a_resume_storm_is_limited_and_keeps_two_peer_connections_at_most(
    settings: Settings, fake_services: Services, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = _PeerCount(monkeypatch)
    app = create_app(_storm_settings(settings), services=fake_services)
    url = await serve(app)
    storm = Misbehaver(
        ProbeOptions(url=url, timeout_s=20),
        MisbehaveOptions(behaviour="reconnect", resume_every=1, reconnect_every_s=0.05),
    )
    own: set[RTCPeerConnection] = set()
    try:
        await storm.connect(greeting_s=5.0)
        session = app[STATE].sessions[storm.call.session_id]
        began = time.monotonic()
        async with peers.watching():
            # eight resumes of the call at once, each from a new peer connection
            statuses = await asyncio.gather(*(_raw_resume(storm.call, own) for _ in range(8)))
            # then a client resuming as fast as the server answers
            stop = asyncio.Event()
            running = asyncio.ensure_future(storm.misbehave(stop))
            for _ in range(600):  # ten attempts, within 30 s
                if storm.stats.resumes + storm.stats.failures >= 10:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await running
            await asyncio.sleep(0.3)
        stats = storm.stats
        assert stats.failures >= 5, (stats, statuses)
        # only the burst (3) and what 0.2/s earned meanwhile got through, the rest got 429
        earned = 3 + math.ceil(settings.access.resumes_per_s * (time.monotonic() - began))
        assert 1 <= statuses.count(200) <= 3 and statuses.count(429) >= 5, statuses
        assert session.resumes == statuses.count(200) + stats.resumes <= earned
        assert peers.most <= 2, peers.most
        assert len(session.open_peers) <= 2
        assert not session.closed.is_set()
        # the call goes on: once the wait is over it resumes, connects and answers
        wait = 1.0 / settings.access.resumes_per_s
        await asyncio.sleep(wait + 0.2)
        await storm.call.resume()
        await storm.call.wait_connected()
        assert "nine to five" in await storm.call.ask("When are you open?")
    finally:
        await storm.hang_up()
    await asyncio.wait_for(session.closed.wait(), 5)
    await asyncio.sleep(0.5)
    assert peers.now() == 0  # every peer connection of the call closed


async def test_a_storm_is_refused_with_a_reason_and_retry_after(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(_storm_settings(settings, resume_burst=1), services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.resume()
        with pytest.raises(OfferRefused) as refused:
            await call.resume()
        assert refused.value.status == 429
        assert "resume" in refused.value.reason and refused.value.retry_after is not None
        assert int(refused.value.retry_after) >= 1
        assert app[STATE].sessions[call.session_id].resumes == 1


def test_guard_limits_per_call_per_address_and_in_flight() -> None:
    guard = ResumeGuard(
        ResumeLimits(per_call_per_s=0.5, per_call_burst=2, per_ip_calls=2, per_ip_in_flight=2)
    )
    # one resume of a call at a time
    with guard.admit("a", "10.0.0.1", 0.0):
        with pytest.raises(ResumeRefused, match="already under way"):
            with guard.admit("a", "10.0.0.1", 0.0):
                pass
        with guard.admit("b", "10.0.0.1", 0.0):
            assert guard.in_flight("10.0.0.1") == 2
            with pytest.raises(ResumeRefused, match="under way from this address"):
                with guard.admit("c", "10.0.0.1", 0.0):
                    pass
    assert guard.in_flight("10.0.0.1") == 0
    # per call: the burst, then the rate
    with guard.admit("a", "10.0.0.1", 0.1):
        pass
    with pytest.raises(ResumeRefused, match="too many resumes of this call") as refused:
        with guard.admit("a", "10.0.0.1", 0.2):
            pass
    assert refused.value.retry_after_s == pytest.approx(1.8, abs=0.01)
    assert refused.value.response().headers["Retry-After"] == "2"
    # per address: 2 calls' worth (burst 4), shared by every call of the address
    with guard.admit("c", "10.0.0.1", 0.3):
        pass
    with pytest.raises(ResumeRefused, match="from this address"):
        with guard.admit("d", "10.0.0.1", 0.3):
            pass
    with guard.admit("d", "10.0.0.2", 0.3):  # another address has its own
        pass
    with guard.admit("a", "10.0.0.2", 2.3):  # the call's bucket refilled, from anywhere
        pass
