"""The operator console end to end: the real server in-process with fake stages (FAQ dialogue),
a caller over WebRTC + control socket, an operator over HTTP + the console's WebSocket, and a
webhook receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import AvatarStore
from inference.dialogue import FaqDialogue
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.call.session import Session
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.server.console import DESK
from signaling.server.webhook import SIGNATURE_HEADER
from signaling.stages.services import Services, WarpRendererFactory

Serve = Callable[[web.Application], Awaitable[str]]
KEY = "operator-key-0123456789"
SECRET = "webhook-secret-0123456789"
ANN = {"Authorization": f"Bearer {KEY}", "X-Operator-Name": "Ann"}


@pytest.fixture(scope="module")
def faq() -> FaqDialogue:
    return FaqDialogue.load()


@pytest.fixture
def services(avatars_root: Path, faq: FaqDialogue) -> Services:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("What are your opening hours?",))),
        dialogue=faq,
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(avatars_root),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=256, seed=1)),
    )
    services.avatar("astronaut")
    return services


def _settings(webhook: Mapping[str, Any] | None = None) -> Settings:
    handoff: dict[str, Any] = {"company_every_s": 30.0}
    if webhook is not None:
        handoff["webhook"] = {"secret": SECRET, "attempts": 2, "backoff_s": 0.1, **webhook}
    return Settings(
        host="127.0.0.1",
        port=0,
        max_sessions=2,
        heartbeat_timeout_s=5.0,
        access={"operator_keys": [KEY], "turns_per_s": 50, "turn_burst": 50},
        records={"enabled": False},
        handoff=handoff,
    )


class Receiver:
    """A webhook receiver that checks the signature (or never answers, ``hang``)."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.bodies: list[dict[str, Any]] = []
        self.hits = 0
        self.got = asyncio.Event()
        self._forever = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.hits += 1
        raw = await request.read()
        if self.hang:
            await self._forever.wait()
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            return web.json_response({"error": "bad signature"}, status=401)
        self.bodies.append(json.loads(raw))
        self.got.set()
        return web.json_response({"ok": True})


class Console:
    """An operator's live feed (``/operator/ws``), its messages collected."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, http: aiohttp.ClientSession) -> Console:
        async with http.post(url + "/operator/token", headers=ANN) as r:
            assert r.status == 200, await r.text()
            grant = await r.json()
        assert grant["operator"].startswith("Ann [")
        ws = await http.ws_connect(url + "/operator/ws", params={"token": grant["token"]})
        return cls(http, ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            async with self._changed:
                self.messages.append(json.loads(msg.data))
                self._changed.notify_all()

    async def wait(self, kind: str, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for m in self.messages:
                if m["type"] == kind and all(_get(m, k) == v for k, v in fields.items()):
                    return m
            return None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: find() is not None), 20)
        found = find()
        assert found is not None
        return found

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _get(message: dict[str, Any], path: str) -> Any:
    value: Any = message
    for part in path.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


async def _act(
    http: aiohttp.ClientSession, url: str, call_id: str, action: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = kw.pop("headers", ANN)
    async with http.post(f"{url}/operator/calls/{call_id}/{action}", headers=headers, **kw) as r:
        return r.status, await r.json()


def _spy_on_audio(session: Session) -> list[int]:
    """The sample counts the call's A/V timeline gets pushed from now on."""
    pushed: list[int] = []
    push = session.player.push

    def spy(audio: np.ndarray, frames: Any) -> float:
        pushed.append(len(audio))
        return push(audio, frames)

    session.player.push = spy  # type: ignore[method-assign]
    return pushed


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_handoff_take_over_say_and_hand_back(
    services: Services, serve: Serve, http: aiohttp.ClientSession
) -> None:
    receiver = Receiver()
    hook_url = await serve(receiver.app()) + "/hook"
    app = create_app(_settings({"url": hook_url}), services=services)
    url = await serve(app)
    actions: list[tuple[str, str, str, dict[str, Any]]] = []

    class Records:
        def record_action(
            self, call_id: str, at: float, actor: str, action: str, detail: Mapping[str, Any]
        ) -> None:
            actions.append((call_id, actor, action, dict(detail)))

    app[DESK].actions = Records
    console = await Console.open(url, http)
    assert (await console.wait("calls"))["queue"] == []
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        session = app[STATE].sessions[call.session_id]
        await call.wait_event("state", state="listening")  # the greeting was said
        await console.wait("call", call__call_id=call.session_id)

        # The caller asks for a person: the page hears the answer and gets the handoff.
        start = len(call.events)
        await call.send({"type": "text", "text": "Can I speak to a human?"})
        event = call.events[await call.wait_event("handoff", start=start, state="waiting")]
        assert event["wait_s"] > 0 and event["language"] == "en"
        queued = await console.wait("handoff", state="waiting")
        assert queued["queue"] == [call.session_id] and queued["call"]["mode"] == "waiting"
        await console.wait("line", line__who="caller", line__text="Can I speak to a human?")
        await asyncio.wait_for(receiver.got.wait(), 10)
        hook = receiver.bodies[0]
        assert hook["event"] == "handoff" and hook["call_id"] == call.session_id
        lines = [(line["who"], line["text"]) for line in hook["transcript"]]
        assert lines[0][0] == "agent" and ("caller", "Can I speak to a human?") in lines, lines

        # Ann takes over and types a line: the avatar says it, in its voice and face.
        status, taken = await _act(http, url, call.session_id, "take")
        assert status == 200 and taken["call"]["operator"].startswith("Ann [")
        await call.wait_event("handoff", start=start, state="connected")
        await console.wait("handoff", state="connected", call__mode="operator")
        pushed = _spy_on_audio(session)
        start = len(call.events)
        line = "Hello, this is Ann from the support team."
        status, _ = await _act(http, url, call.session_id, "say", json={"text": line})
        assert status == 200
        said = await call.wait_event("reply_text", start=start, text=line)
        await call.wait_event("state", start=said, state="listening")
        assert sum(pushed) > 48000 * 0.5, pushed  # ~0.5 s or more of speech on the timeline
        await console.wait("line", line__who="operator", line__text=line)

        # While Ann has the call, what the caller says goes to her, not the agent.
        start = len(call.events)
        await call.send({"type": "text", "text": "What are your opening hours?"})
        await call.wait_event("transcript", start=start, text="What are your opening hours?")
        await console.wait("line", line__who="caller", line__text="What are your opening hours?")
        await asyncio.sleep(0.5)
        assert not [e for e in call.events[start:] if e["type"] == "reply_text"]

        # Another operator cannot speak for Ann; a forged key gets nothing.
        bob = {"Authorization": f"Bearer {KEY}", "X-Operator-Name": "Bob"}
        status, body = await _act(
            http, url, call.session_id, "say", json={"text": "hi"}, headers=bob
        )
        assert status == 409 and "Ann" in body["error"]
        forged = {"Authorization": "Bearer not-the-operator-key-at-all"}
        status, _ = await _act(http, url, call.session_id, "take", headers=forged)
        assert status == 401
        status, _ = await _act(http, url, call.session_id, "say", json={"text": ""})
        assert status == 400

        # Hand back: the agent answers the next question.
        status, _ = await _act(http, url, call.session_id, "hand_back")
        assert status == 200
        await call.wait_event("handoff", start=start, state="returned")
        answer = await call.ask("What are your opening hours?")
        assert "Monday to Friday" in answer, answer
        status, body = await _act(http, url, call.session_id, "hand_back")
        assert status == 409 and "not taken over" in body["error"]
    await console.wait("ended", call_id=call.session_id)
    for action in ("take", "hand_back"):
        status, body = await _act(http, url, call.session_id, action)
        assert status == 404 and "ended" in body["error"]
    await console.close()
    assert [(a[2], a[1].split(" ")[0]) for a in actions] == [
        ("take_over", "Ann"),
        ("say", "Ann"),
        ("hand_back", "Ann"),
    ]
    assert actions[1][3] == {"text": line} and actions[0][0] == call.session_id


async def test_only_operator_keys_see_calls(
    services: Services, serve: Serve, http: aiohttp.ClientSession
) -> None:
    app = create_app(_settings(), services=services)
    url = await serve(app)
    async with http.get(url + "/operator/calls") as r:
        assert r.status == 401
    async with http.get(
        url + "/operator/calls", headers={"Authorization": "Bearer " + "x" * 24}
    ) as r:
        assert r.status == 401
    async with http.post(url + "/operator/token", headers={"X-API-Key": "y" * 24}) as r:
        assert r.status == 401
    for token in ("op1.forged.token", "nonsense"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/operator/ws", params={"token": token})
        assert refused.value.status == 401
    async with http.get(url + "/operator/calls", headers=ANN) as r:
        assert r.status == 200 and (await r.json())["calls"] == []
    async with http.get(url + "/operator") as r:
        assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"


async def test_operator_access_is_off_without_keys(
    services: Services, serve: Serve, http: aiohttp.ClientSession
) -> None:
    settings = _settings().model_copy(
        update={"access": _settings().access.model_copy(update={"operator_keys": []})}
    )
    url = await serve(create_app(settings, services=services))
    async with http.get(url + "/operator/calls", headers=ANN) as r:
        assert r.status == 403


async def test_a_hanging_webhook_never_holds_up_the_call(
    services: Services, serve: Serve, http: aiohttp.ClientSession
) -> None:
    receiver = Receiver(hang=True)
    hook_url = await serve(receiver.app()) + "/hook"
    app = create_app(_settings({"url": hook_url, "timeout_s": 0.5}), services=services)
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        await call.wait_event("state", state="listening")
        start = len(call.events)
        await call.send({"type": "text", "text": "Can I speak to a human?"})
        await call.wait_event("handoff", start=start, state="waiting")
        answer = await call.ask("What are your opening hours?")
        assert "Monday to Friday" in answer
        webhook = app[DESK].webhook
        assert webhook is not None
        for _ in range(100):  # two attempts of 0.5 s, 0.1 s apart, then it gives up
            if webhook.failed:
                break
            await asyncio.sleep(0.05)
        assert webhook.failed == 1 and receiver.hits == 2
        assert not app[STATE].sessions[call.session_id].closed.is_set()


async def test_asking_twice_hands_off_whatever_the_agent_says(
    fake_services: Services, serve: Serve
) -> None:
    app = create_app(_settings(), services=fake_services)  # the scripted agent never hands off
    url = await serve(app)
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        await call.wait_event("state", state="listening")
        first = await call.ask("Can I talk to a human?")
        assert "nine to five" in first
        assert not [e for e in call.events if e["type"] == "handoff"]
        second = await call.ask("Please, I want a real person.")
        assert "team" in second
        await call.wait_event("handoff", state="waiting")
        assert app[DESK].queue() == [call.session_id]
