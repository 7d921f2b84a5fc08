"""The bot against a tiny aiortc answerer on 127.0.0.1 that speaks the control protocol.

The fake server greets, hears the bot's mic with an energy detector, and answers with a
speech-like tone whose envelope also drives a dark "mouth" rectangle in its video, so the
bot's latency, fps, correlation, skew and barge-in numbers are checked against known truth.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from signaling.client.bot import BotError, BotOptions, run_bot
from signaling.ice import enable_loopback_candidates

SR = 48_000
BOX = [0.3, 0.6, 0.7, 0.9]
THINK_S = 0.3
HANGOVER_S = 0.3


def _speechlike(duration: float, seed: int) -> np.ndarray:
    """0..1 syllable envelope at 100 Hz with irregular syllables (no single period)."""
    rng = np.random.default_rng(seed)
    env = np.zeros(int(duration * 100))
    s = 0
    while s < env.size:
        d = int(rng.integers(12, 30))
        seg = np.sin(np.pi * np.arange(d) / d) * rng.uniform(0.5, 1.0)
        env[s : s + d] = seg[: env.size - s]
        s += d + int(rng.integers(3, 18))
    return env


@dataclass
class _FakeCall:
    clock0: float
    reply_env: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reply_start: float = 0.0
    reply_end: float = 0.0

    def env_at(self, t: float) -> float:
        if not self.reply_start <= t < self.reply_end:
            return 0.0
        i = int((t - self.reply_start) * 100)
        return float(self.reply_env[i]) if i < self.reply_env.size else 0.0


class _Voice(MediaStreamTrack):
    kind = "audio"

    def __init__(self, call: _FakeCall) -> None:
        super().__init__()
        self.call, self.n = call, 0

    async def recv(self) -> av.AudioFrame:
        due = self.call.clock0 + self.n / SR
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = self.call.clock0 + (self.n + np.arange(960)) / SR
        amp = np.array([self.call.env_at(x) for x in t[::96]]).repeat(96)
        x = (0.3 * amp * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = SR, self.n
        frame.time_base = fractions.Fraction(1, SR)
        self.n += 960
        return frame


class _Face(MediaStreamTrack):
    kind = "video"

    def __init__(self, call: _FakeCall) -> None:
        super().__init__()
        self.call, self.k = call, 0

    async def recv(self) -> av.VideoFrame:
        due = self.call.clock0 + self.k / 25
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        img = np.full((128, 128, 3), 170, np.uint8)
        o = self.call.env_at(due)
        half = 1 + int(o * 14)
        img[108 - half : 108 + half, 48:80] = 20
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = self.k * 3600, fractions.Fraction(1, 90_000)
        self.k += 1
        return frame


class FakeServer:
    def __init__(self) -> None:
        self.calls: dict[str, tuple[RTCPeerConnection, _FakeCall, asyncio.Queue[dict]]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.busy = False

    async def offer(self, request: web.Request) -> web.Response:
        if self.busy:
            return web.json_response({"error": "full"}, status=503, headers={"Retry-After": "5"})
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call = _FakeCall(clock0=time.monotonic())
        out: asyncio.Queue[dict] = asyncio.Queue()
        sid = f"s{len(self.calls) + 1}"
        self.calls[sid] = (pc, call, out)

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.create_task(self._listen(track, call, out)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
        for t in pc.getTransceivers():
            t.sender.replaceTrack(_Voice(call) if t.kind == "audio" else _Face(call))
            t.direction = "sendrecv" if t.kind == "audio" else "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": sid})

    async def _say(self, call: _FakeCall, out: asyncio.Queue[dict], seconds: float, seed: int):
        call.reply_env = _speechlike(seconds, seed)
        call.reply_start = time.monotonic() + 0.05
        call.reply_end = call.reply_start + seconds
        out.put_nowait({"type": "state", "state": "speaking"})
        await asyncio.sleep(seconds + 0.05)
        out.put_nowait({"type": "state", "state": "listening"})

    async def _listen(self, track: MediaStreamTrack, call: _FakeCall, out: asyncio.Queue[dict]):
        """Energy VAD on the bot's mic; replies to each utterance, barge-in while speaking."""
        await self._say(call, out, 1.0, seed=7)  # greeting
        loud, quiet, in_speech, turn = 0, 0, False, 0
        reply: asyncio.Task[None] | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            x = frame.to_ndarray().astype(np.float64) / 32768
            rms = float(np.sqrt(np.mean(x * x)))
            loud, quiet = (loud + 1, 0) if rms > 0.01 else (0, quiet + 1)
            if not in_speech and loud >= 3:
                in_speech = True
                if reply is not None and not reply.done():
                    reply.cancel()
                    call.reply_end = time.monotonic()
                    out.put_nowait({"type": "barge_in", "turn": turn, "dropped_s": 1.0})
            elif in_speech and quiet * 0.02 >= HANGOVER_S:
                in_speech = False
                turn += 1
                reply = asyncio.create_task(self._turn(call, out, turn))
                self.tasks.append(reply)

    async def _turn(self, call: _FakeCall, out: asyncio.Queue[dict], turn: int) -> None:
        out.put_nowait(
            {"type": "transcript", "text": f"question {turn}", "language": "en", "turn": turn}
        )
        out.put_nowait({"type": "state", "state": "thinking"})
        await asyncio.sleep(THINK_S)
        for i, s in enumerate(["We open at nine.", "We close at six."]):
            out.put_nowait(
                {"type": "reply_text", "text": s, "language": "en", "turn": turn, "index": i}
            )
        out.put_nowait({"type": "timings", "turn": turn, "stages": {"first_audio": 300.0}})
        await self._say(call, out, 3.0, seed=turn)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("session", "")
        if sid not in self.calls:
            await ws.close(code=4404, message=b"unknown session")
            return ws
        _, _, out = self.calls[sid]
        await ws.send_json(
            {"type": "hello", "session": sid, "avatar": "fake", "fps": 25, "mouth_box": BOX}
        )

        async def pump() -> None:
            while True:
                await ws.send_json(await out.get())

        pumper = asyncio.create_task(pump())
        _, call, _ = self.calls[sid]
        async for msg in ws:
            data = json.loads(msg.data) if msg.type == WSMsgType.TEXT else {}
            if data.get("type") == "ping":
                out.put_nowait({"type": "pong"})
            elif data.get("type") == "text":
                self.tasks.append(asyncio.create_task(self._turn(call, out, 99)))
        pumper.cancel()
        return ws

    async def close(self) -> None:
        for pc, _, _ in self.calls.values():
            await pc.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def fake_url(aiohttp_server) -> AsyncIterator[tuple[str, FakeServer]]:
    enable_loopback_candidates()
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/offer", fake.offer)
    app.router.add_get("/ws", fake.ws)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield f"http://127.0.0.1:{server.port}", fake
    await fake.close()


def _question(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * 300 * t) * np.minimum(1, np.sin(np.pi * t / seconds) * 4)
    silence = np.zeros(int(0.3 * rate))
    sf.write(path, np.stack([np.r_[x, silence]] * 2, axis=1), rate, subtype="FLOAT")
    return path


async def test_bot_measures_a_reply(fake_url, tmp_path: Path) -> None:
    url, _ = fake_url
    options = BotOptions(
        url=url,
        audio=_question(tmp_path / "q.wav"),
        record=tmp_path / "reply.mp4",
        report=tmp_path / "report.json",
        timeout_s=10,
    )
    report = await run_bot(options)
    assert report.errors == []
    assert report.transcript == "question 1"
    assert report.reply_text == "We open at nine. We close at six."
    assert report.timings == {"first_audio": 300.0}
    # truth: hangover + think + 50 ms, plus the transport's delay
    assert report.reply_audio_latency_ms is not None
    assert 550 <= report.reply_audio_latency_ms <= 1500
    assert report.reply_video_latency_ms is not None
    assert 550 <= report.reply_video_latency_ms <= 1600
    assert report.video_fps is not None and report.video_fps >= 20
    assert report.mouth_audio_correlation is not None
    assert report.mouth_audio_correlation_control is not None
    assert report.mouth_audio_correlation > report.mouth_audio_correlation_control + 0.2
    assert report.av_skew_ms is not None and abs(report.av_skew_ms) <= 120
    assert json.loads((tmp_path / "report.json").read_text())["transcript"] == "question 1"
    with av.open(str(tmp_path / "reply.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        kinds = [type(f).__name__ for f in c.decode(video=0, audio=0)]
    assert kinds.count("VideoFrame") >= 0.9 * report.video_frames
    assert kinds.count("AudioFrame") > 0


async def test_bot_measures_barge_in(fake_url, tmp_path: Path) -> None:
    url, _ = fake_url
    options = BotOptions(
        url=url,
        audio=_question(tmp_path / "q.wav"),
        interrupt_audio=_question(tmp_path / "stop.wav", seconds=0.8, rate=44_100),
        interrupt_after_ms=600,
        timeout_s=10,
    )
    report = await run_bot(options)
    assert report.errors == []
    assert report.server_barge_in is not None and report.server_barge_in["turn"] == 1
    # truth: 3 loud mic frames (60 ms) plus the transport's delay both ways
    assert report.barge_in_ms is not None and 40 <= report.barge_in_ms <= 700


async def test_bot_reports_busy_server(fake_url, tmp_path: Path) -> None:
    url, fake = fake_url
    fake.busy = True
    with pytest.raises(BotError, match="503"):
        await run_bot(BotOptions(url=url, text="hello", timeout_s=5))


async def test_bot_typed_question(fake_url) -> None:
    url, _ = fake_url
    report = await run_bot(BotOptions(url=url, text="when do you open?", timeout_s=10))
    assert report.errors == []
    assert (report.transcript, report.turn) == ("question 99", 99)
    assert report.question_start_ms == report.speech_end_ms
    # truth: think + 50 ms, plus the transport's delay
    assert report.reply_audio_latency_ms is not None
    assert 300 <= report.reply_audio_latency_ms <= 1100
