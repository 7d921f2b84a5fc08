"""Liveness and recovery: reconnect, resume on a new peer connection, vanished clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]


async def test_control_socket_reconnects_to_the_same_call(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(settings, services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        state = app[STATE]
        session = state.sessions[call.session_id]
        await call.wait_connected()
        await call.wait_event("state", state="speaking")  # the greeting
        first = await call.ask("When are you open?", wait_end=False)
        assert "nine to five" in first
        await call.drop_ws()  # network drop mid-reply: no close handshake
        await asyncio.sleep(0.3)
        assert state.sessions.get(call.session_id) is session  # the call waits
        start = len(call.events)
        await call.open_ws()
        hello = await call.wait_event("hello", start=start)
        assert call.events[hello]["session"] == call.session_id
        reply = await call.ask("And on Sunday?")
        assert "nine to five" in reply
        turns = {e["turn"] for e in call.events if e.get("type") == "reply_text"}
        assert len(turns) >= 2  # the turn count (the conversation) carried on
        assert state.sessions.get(call.session_id) is session
        assert session.ws_attaches == 2


async def test_resume_with_a_new_offer_keeps_the_call(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(settings, services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        session = app[STATE].sessions[call.session_id]
        await call.wait_connected()
        await call.ask("When are you open?", wait_end=False)
        old_id, old_pc = call.session_id, session.pc
        await call.resume()
        assert call.session_id == old_id
        assert session.pc is not old_pc and session.resumes == 1
        await call.wait_connected()
        frames = len(call.video_times)
        for _ in range(30):  # at the call's rung (10 fps at the lowest), within 3 s
            await asyncio.sleep(0.1)
            if len(call.video_times) > frames + 5:
                break
        assert len(call.video_times) > frames + 5  # media flows on the new connection
        reply = await call.ask("Where is my order?")
        assert "nine to five" in reply
        assert session._turn == 3  # greeting + two questions: resumed, not greeted again
        assert app[STATE].sessions[old_id] is session

        # A resume needs the call's token; an unknown or ended call is 404.
        sdp = session.pc.remoteDescription.sdp
        with pytest.raises(OfferRefused) as refused:
            await call._post("/offer", {"sdp": sdp, "type": "offer", "session": old_id})
        assert refused.value.status == 400 and "token" in refused.value.reason
        forged = {"sdp": sdp, "type": "offer", "session": old_id, "token": "s1.forged"}
        with pytest.raises(OfferRefused) as refused:
            await call._post("/offer", forged)
        assert refused.value.status == 401
        with pytest.raises(OfferRefused) as refused:
            await call._post("/offer", {**forged, "session": "gone123"})
        assert refused.value.status == 404
        assert session.resumes == 1


async def test_vanished_client_is_cleaned_up_within_10_s(
    fake_services: Services, serve: Serve
) -> None:
    settings = Settings(host="127.0.0.1", port=0)  # the default liveness settings
    app = create_app(settings, services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        state = app[STATE]
        session = state.sessions[call.session_id]
        await call.wait_connected()
        await asyncio.sleep(0.5)
        vanished = time.monotonic()
        await call.vanish()
        await asyncio.wait_for(session.closed.wait(), 12)
        took = time.monotonic() - vanished
        assert took < 10.0, took
        assert call.session_id not in state.sessions
        assert "heartbeat" in session.close_reason


async def test_unused_offer_is_dropped_after_the_grace(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(settings.model_copy(update={"resume_grace_s": 1.5}), services=fake_services)
    url = await serve(app)
    call = ProbeCall(ProbeOptions(url=url, timeout_s=10))
    pc = call._new_pc()
    await pc.setLocalDescription(await pc.createOffer())
    answer = await call._post("/offer", {"sdp": pc.localDescription.sdp, "type": "offer"})
    session = app[STATE].sessions[answer["session"]]
    await pc.close()  # never applies the answer: the server's peer never connects
    await asyncio.wait_for(session.closed.wait(), 5)
    assert session.close_reason == "media connection lost and not resumed"
    await call.hang_up()
