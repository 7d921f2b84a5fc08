"""The control socket's per-call turn rate: typed messages over it are refused with an error
event, the reply in progress goes on, and a reconnect does not reset the count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import AccessSettings, Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]


def _refusals(call: ProbeCall, start: int = 0) -> list[str]:
    return [
        str(e.get("reason"))
        for e in call.events[start:]
        if e.get("type") == "error" and "too many typed messages" in str(e.get("reason"))
    ]


async def test_typed_turns_over_the_rate_are_refused_per_call(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    access = AccessSettings(turns_per_s=0.05, turn_burst=2)
    app = create_app(settings.model_copy(update={"access": access}), services=fake_services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        await call.send({"type": "text", "text": "When are you open?"})
        first = await call.ask("And on Sunday?", wait_end=False)  # the burst allows two
        assert "nine to five" in first
        turn = app[STATE].sessions[call.session_id]._turn
        start = len(call.events)
        await call.send({"type": "text", "text": "And now?"})
        await call.wait_event("error", start=start)
        refused = _refusals(call, start)
        assert refused and "0.05 new replies per second" in refused[0]
        assert app[STATE].sessions[call.session_id]._turn == turn  # no new turn started
        await call.wait_event("state", start=start, state="listening")  # the reply went on
        await call.drop_ws()  # a new socket does not bring a new allowance
        await call.open_ws()
        again = len(call.events)
        await call.send({"type": "text", "text": "Hello?"})
        await call.wait_event("error", start=again)
        assert _refusals(call, again)
        await call.send({"type": "ping", "t": 1.0})  # other messages are not turns
        await call.wait_event("pong", start=again)
