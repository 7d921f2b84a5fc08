"""A misbehaving call's media work stays bounded: a resume goes on at the call's quality
rung (a reconnect storm cannot reset it to the most expensive one), and a flood (replies cut
off one after another) over its share of stage work plays at a low rung until it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from inference.work import FairExecutor, FairExecutorOptions
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]


async def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


@pytest.mark.timeout(90)
async def test_a_resumed_call_goes_on_at_its_rung(
    settings: Settings, fake_services: Services, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings, services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        session = app[STATE].sessions[call.session_id]
        await call.wait_connected()
        assert session.quality is not None
        monkeypatch.setattr(session, "_bound_media", lambda: None)  # only the test's limit
        low = len(session.quality.controller.ladder) - 1
        top = session.quality.height_for(session.quality.controller.ladder[0])
        session.quality.limit(low, "test")  # as congestion or a limit would have put it
        assert await _until(
            lambda: (
                session.quality is not None
                and session.quality.rung.fps == session.quality.controller.ladder[low].fps
            ),
            5.0,
        )
        await call.resume()
        new = session.quality
        assert new is not None
        assert new.controller.index == low  # not the top rung (the default start)
        assert new.rung == new.controller.ladder[low]
        assert session.renderer.frame_size[1] < top  # the renderer is at the low rung's size
        assert new.height_for(new.controller.ladder[0]) == top  # and may climb back
        assert new.changes and new.changes[0][1] == new.controller.ladder[low]
        start = [e for e in call.events if e.get("type") == "quality"][-1]
        assert start["reason"] == "start" and start["rung"] == low


@pytest.mark.timeout(90)
async def test_a_flood_over_its_share_plays_at_a_low_rung_until_it_stops(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    work = FairExecutor(
        FairExecutorOptions(workers=2, share=0.05, burst_s=1.2, background_below_s=0.2)
    )
    services = dataclasses.replace(fake_services, work=work)
    app = create_app(settings, services=services)
    url = await serve(app)
    try:
        async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
            session = app[STATE].sessions[call.session_id]
            await call.wait_connected()
            await call.wait_event("state", state="listening")  # the greeting is over
            assert session.quality is not None
            # busy, but its replies play out: never held (a loaded machine makes every
            # call's work take longer)
            await session.lane.run(time.sleep, 1.0)
            assert await _until(lambda: session.lane.budget() < 0.6, 1.0)  # booked after it
            await asyncio.sleep(1.5)
            assert not session._over_share
            # a flood: replies cut off one after another (typed, then interrupted)
            for n in range(3):
                await call.send({"type": "text", "text": f"When are you open? ({n})"})
                await asyncio.sleep(0.2)
                await call.send({"type": "interrupt"})
            ladder = session.quality.controller.ladder
            assert await _until(lambda: session._over_share, 3.0)
            assert await _until(
                lambda: session.quality is not None and session.quality.rung.fps <= ladder[3].fps,
                3.0,
            )
            limited = [
                e
                for e in call.events
                if e.get("type") == "quality" and e.get("reason") == "over its share of the CPU"
            ]
            # the limit's own change, unless the controller went as low by itself (this
            # machine's load can make it: then the limit changes nothing)
            assert limited or session.quality.controller.index >= 3, call.events
            assert all(e["rung"] >= 3 and e["fps"] <= ladder[3].fps for e in limited)
            # no reply cut off for 10 s: the limit is lifted
            assert await _until(lambda: not session._over_share, 15.0)
            assert await _until(
                lambda: (
                    session.quality is not None
                    and session.quality.rung == session.quality.controller.rung
                ),
                3.0,
            )
    finally:
        work.shutdown()
