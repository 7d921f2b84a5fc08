"""The operator's own voice on a call, end to end in-process: the real server with fake stages
and the warp renderer, a caller (aiortc, speaking through a paced mic) and an operator peer
(aiortc) that speaks an unseen voice (espeak) and hears the caller."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.audio import resample_int16
from inference.avatar import AvatarStore
from inference.dialogue import FaqDialogue
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.client.bot_audio import MIC_RATE, MicTrack, voiced_span
from signaling.client.bot_media import ReceivedMedia, consume_audio
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.ice import enable_loopback_candidates
from signaling.server.app import STATE, create_app
from signaling.server.console import DESK, VOICES
from signaling.stages.services import Services, WarpRendererFactory
from tests.harness.voices import speak

Serve = Callable[[web.Application], Awaitable[str]]
KEY = "operator-key-0123456789"
ANN = {"Authorization": f"Bearer {KEY}", "X-Operator-Name": "Ann"}


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    """The operator's line in a voice the system never heard (espeak), 48 kHz."""
    return resample_int16(
        speak("espeak-en-us-140", "Hello, this is Ann speaking."), 16000, MIC_RATE
    )


@pytest.fixture
def services(avatars_root: Path) -> Services:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("My parcel is lost.",))),
        dialogue=FaqDialogue.load(),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(avatars_root),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=256, seed=1)),
    )
    services.avatar("astronaut")
    return services


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _settings() -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        max_sessions=2,
        heartbeat_timeout_s=8.0,
        access={"operator_keys": [KEY], "turns_per_s": 50, "turn_burst": 50},
        records={"enabled": False},
        handoff={"company_every_s": 60.0},
    )


async def _act(
    http: aiohttp.ClientSession, url: str, call_id: str, action: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = kw.pop("headers", ANN)
    async with http.post(f"{url}/operator/calls/{call_id}/{action}", headers=headers, **kw) as r:
        return r.status, await r.json()


class OperatorPeer:
    """The operator's side: a paced microphone out, the caller's audio in (arrival-stamped)."""

    def __init__(self) -> None:
        enable_loopback_candidates()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack()
        self.pc.addTransceiver(self.mic, direction="sendrecv")
        self.heard = ReceivedMedia()
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(consume_audio(track, self.heard)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def answer(self, body: Mapping[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        await asyncio.wait_for(self.connected.wait(), 10)

    def loud_since(self, t: float, threshold: float = 500.0) -> float | None:
        """Arrival time of the first received chunk after ``t`` louder than ``threshold``."""
        for pcm, at in zip(self.heard.audio_chunks, self.heard.audio_t, strict=True):
            if at >= t and np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > threshold:
                return at
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def test_the_operator_talks_through_the_avatar_and_hears_the_caller(
    services: Services, serve: Serve, http: aiohttp.ClientSession, voice: np.ndarray
) -> None:
    app = create_app(_settings(), services=services)
    url = await serve(app)
    actions: list[tuple[str, str, dict[str, Any]]] = []

    class Records:
        def record_action(
            self, call_id: str, at: float, actor: str, action: str, detail: Mapping[str, Any]
        ) -> None:
            actions.append((actor.split(" ")[0], action, dict(detail)))

    app[DESK].actions = Records
    operator = OperatorPeer()
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20), mic=MicTrack) as call:
        await call.wait_connected()
        caller_mic = call.mic
        assert isinstance(caller_mic, MicTrack)
        session = app[STATE].sessions[call.session_id]
        await call.wait_event("state", state="listening")
        await call.send({"type": "text", "text": "Can I speak to a human?"})
        await call.wait_event("handoff", state="waiting")

        # Only the operator who has the call may open a voice on it.
        status, body = await _act(http, url, call.session_id, "voice", json=await operator.offer())
        assert status == 409 and "take it over" in body["error"]
        forged = {"Authorization": "Bearer not-an-operator-key-at-all"}
        status, _ = await _act(http, url, call.session_id, "voice", json={}, headers=forged)
        assert status == 401
        assert (await _act(http, url, call.session_id, "take"))[0] == 200
        for bad in ({"sdp": 5, "type": "offer"}, {"sdp": "v=0", "type": "answer"}):
            assert (await _act(http, url, call.session_id, "voice", json=bad))[0] == 400
        status, body = await _act(
            http, url, call.session_id, "voice", json={"sdp": "v=0\r\nm=audio x", "type": "offer"}
        )
        assert status == 400 and "offer" in body["error"]

        # A typed line is playing when Ann starts to talk: it stops (barge-in), her voice goes on.
        status, body = await _act(http, url, call.session_id, "voice", json=await operator.offer())
        assert status == 200, body
        await operator.answer(body)
        long_line = "Let me read you our whole returns policy from the very beginning. " * 3
        start = len(call.events)
        assert (await _act(http, url, call.session_id, "say", json={"text": long_line}))[0] == 200
        await call.wait_event("state", start=start, state="speaking")
        pushed: list[tuple[int, list[np.ndarray]]] = []
        push = session.player.push

        def spy(audio: np.ndarray, frames: Any) -> float:
            pushed.append((len(audio), list(frames)))
            return push(audio, frames)

        session.player.push = spy  # type: ignore[method-assign]
        talking = operator.mic.play(voice)
        await call.wait_event("barge_in", start=start)
        await asyncio.wait_for(talking.finished, 10)
        await asyncio.sleep(0.8)
        live = app[VOICES].peers[call.session_id].voice
        assert live.stats.spurts >= 1 and live.stats.voiced_s > 1.0, live.stats
        voiced = sum(n for n, frames in pushed if len(frames) <= 5) / 48000  # her chunks
        assert voiced > 0.8 * len(voice) / MIC_RATE - 0.5, (voiced, len(voice) / MIC_RATE)
        x0, y0, x1, y1 = services.avatar("astronaut").mouth_box()
        mouths = [
            f[
                int(y0 * f.shape[0]) : int(y1 * f.shape[0]),
                int(x0 * f.shape[1]) : int(x1 * f.shape[1]),
            ]
            for _, frames in pushed
            if len(frames) <= 5
            for f in frames
        ]
        motion = [np.abs(a.astype(int) - b).mean() for a, b in itertools.pairwise(mouths)]
        assert np.mean(motion) > 1.0, np.mean(motion)  # the lips move with her voice
        # what she said is transcribed once she pauses: captioned and recorded as hers
        said = call.events[await call.wait_event("reply_text", start=start, speaker="operator")]
        assert said["text"] == "My parcel is lost."
        asr = services.asr
        assert isinstance(asr, ScriptedAsr)
        assert asr.heard[-1].duration_s > 0.6 * len(voice) / MIC_RATE

        # The caller talks over her: she hears them, and their speech does not cut her off.
        start = len(call.events)
        operator.mic.play(voice)
        heard = caller_mic.play(voice)
        on_air = await asyncio.wait_for(heard.started, 5)
        await asyncio.wait_for(heard.finished, 10)
        await asyncio.sleep(0.5)
        onset = on_air + voiced_span(voice)[0]
        first = operator.loud_since(onset)
        # (a loose bound: a test on a busy machine; scripts/bench_operator.py measures it)
        assert first is not None and first - onset < 1.5, (first, onset)
        assert not [e for e in call.events[start:] if e["type"] == "barge_in"]

        # Hand back: her voice ends with the take-over, the agent answers again.
        assert (await _act(http, url, call.session_id, "hand_back"))[0] == 200
        await call.wait_event("handoff", state="returned")
        assert call.session_id not in app[VOICES].peers
        assert not session.handoff.voice_live
        assert "Monday to Friday" in await call.ask("What are your opening hours?")
    await operator.close()
    late = OperatorPeer()
    status, body = await _act(http, url, call.session_id, "voice", json=await late.offer())
    assert status == 404 and "ended" in body["error"]
    await late.close()
    names = [action for who, action, _ in actions if who == "Ann"]
    assert names[:3] == ["take_over", "voice_on", "say"], names
    assert sorted(names[3:]) == ["hand_back", "voice_off"], names  # every take-over on record
    voice_off = next(detail for _, action, detail in actions if action == "voice_off")
    assert voice_off["voiced_s"] > 1.0 and voice_off["reason"] == "handed back"
