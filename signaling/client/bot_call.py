"""One recording-bot call: offer/answer, control socket, speaking, listening, recording."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from media.congestion.jitter import install_receive_buffers
from signaling.client.bot_audio import MicTrack, voiced_span
from signaling.client.bot_media import Mp4Recorder, ReceivedMedia, consume_audio, consume_video
from signaling.client.bot_options import BotError, BotOptions
from signaling.client.bot_report import DEFAULT_MOUTH_BOX, BotReport, CallRecord, build_report
from signaling.ice import enable_loopback_candidates

__all__ = ["BotCall"]

_PING_EVERY_S = 5.0
_GREETING_START_S = 8.0  # how long to wait for a greeting to begin before speaking anyway
_QUIET_S = 0.5  # before asking, the avatar's audio must have been quiet this long
_VIDEO_LAG_S = 0.15  # video may trail its audio by this much: idle frames start after it
_TAIL_S = 1.0  # keep recording this long after the reply ends (video lags audio a little)


class _Events:
    """The control WebSocket's events with arrival times, and waiting on them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.items: list[tuple[float, dict[str, Any]]] = []
        self._clock = clock
        self._changed = asyncio.Condition()

    async def add(self, event: dict[str, Any]) -> None:
        async with self._changed:
            self.items.append((self._clock(), event))
            self._changed.notify_all()

    def find(self, kind: str, *, after: float, **fields: Any) -> float | None:
        for t, e in self.items:
            if (
                t >= after
                and e.get("type") == kind
                and all(e.get(k) == v for k, v in fields.items())
            ):
                return t
        return None

    async def wait(self, kind: str, *, after: float, within: float, **fields: Any) -> float | None:
        async def found() -> float:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self.find(kind, after=after, **fields) is not None
                )
            t = self.find(kind, after=after, **fields)
            assert t is not None
            return t

        try:
            return await asyncio.wait_for(found(), within)
        except TimeoutError:
            return None


class _ReplyWatch:
    """Live detection of reply audio at the bot (3 loud 20 ms frames in a row)."""

    def __init__(self) -> None:
        self.armed_after: float | None = None
        self.threshold = 0.003
        self.heard = asyncio.Event()
        self.heard_t: float | None = None
        self.last_loud_t: float | None = None  # before arming: the last loud frame (greeting)
        self._run = 0
        self._recent: list[float] = []

    def on_chunk(self, pcm: np.ndarray, t: float) -> None:
        rms = float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2))) if pcm.size else 0.0
        if self.armed_after is None:
            self._recent = [*self._recent[-99:], rms]
            if rms > max(0.003, 4.0 * float(np.percentile(self._recent, 20))):
                self.last_loud_t = t
            return
        if t < self.armed_after or self.heard.is_set():
            return
        self._run = self._run + 1 if rms > self.threshold else 0
        if self._run >= 3:
            self.heard_t = t
            self.heard.set()

    def arm(self, after: float) -> None:
        floor = float(np.percentile(self._recent, 20)) if self._recent else 0.0
        self.threshold = max(0.003, 4.0 * floor)
        self.armed_after = after


class BotCall:
    """One call as ``options`` say; :meth:`run` makes it and returns the report."""

    def __init__(
        self, options: BotOptions, question: np.ndarray | None, interrupt: np.ndarray | None
    ):
        self.o = options
        self.question = question
        self.interrupt = interrupt
        self.clock = time.monotonic
        self.t0 = self.clock()
        self.media = ReceivedMedia()
        self.events = _Events(self.clock)
        self.errors: list[str] = []
        self.watch = _ReplyWatch()
        self.mic = MicTrack(clock=self.clock)
        self.recorder = Mp4Recorder(options.record) if options.record else None
        self.first_audio = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.mouth_box = DEFAULT_MOUTH_BOX
        self.question_start: float | None = None
        self.speech_end: float | None = None
        self.interrupt_start: float | None = None
        self.idle_from: float | None = None
        self.session_token = ""

    def _on_audio(self, pcm: np.ndarray, t: float) -> None:
        self.first_audio.set()
        self.watch.on_chunk(pcm, t)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            coro = consume_audio(track, self.media, recorder=self.recorder, on_chunk=self._on_audio)
        else:
            coro = consume_video(track, self.media, recorder=self.recorder)
        self.tasks.append(asyncio.create_task(coro))

    async def _access_token(self, http: aiohttp.ClientSession) -> str | None:
        """The token for ``/offer``: given, or asked of ``POST /session`` with the API key."""
        if self.o.api_key is None:
            return self.o.token
        url = f"{self.o.url.rstrip('/')}/session"
        try:
            async with http.post(url, headers={"Authorization": f"Bearer {self.o.api_key}"}) as r:
                body = await r.json(content_type=None)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BotError(f"cannot get a session token from {url}: {exc}") from exc
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            reason = body.get("error", body) if isinstance(body, dict) else body
            raise BotError(f"session token refused ({status}): {reason}")
        return str(body["token"])

    async def _offer(self, http: aiohttp.ClientSession, pc: RTCPeerConnection) -> str:
        token = await self._access_token(http)
        await pc.setLocalDescription(await pc.createOffer())
        body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
        if token:
            body["token"] = token
        if self.o.avatar:
            body["avatar"] = self.o.avatar
        if self.o.language:
            body["language"] = self.o.language
        url = self.o.url.rstrip("/")
        try:
            async with http.post(f"{url}/offer", json=body) as r:
                if r.status == 503:
                    raise BotError(f"server busy (503), Retry-After {r.headers.get('Retry-After')}")
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BotError(f"cannot reach {url}/offer: {exc or type(exc).__name__}") from exc
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if r.status != 200:
            reason = answer.get("error", answer) if isinstance(answer, dict) else text[:200]
            raise BotError(f"offer refused ({r.status}): {reason}")
        if not isinstance(answer, dict) or not {"sdp", "type", "session"} <= answer.keys():
            raise BotError(f"malformed answer from {url}/offer: {text[:200]!r}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        install_receive_buffers(pc)  # aiortc's own can stall, or keep latency after a loss
        self.session_token = str(answer.get("token") or "")
        return str(answer["session"])

    async def _read_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError:
                self.errors.append(f"non-JSON control message: {msg.data[:80]!r}")
                continue
            if not isinstance(event, dict):
                self.errors.append(f"control message is not an object: {msg.data[:80]!r}")
                continue
            if event.get("type") == "hello":
                self._take_mouth_box(event.get("mouth_box"))
            if event.get("type") == "error":
                self.errors.append(f"server error event: {event.get('reason')}")
            await self.events.add(event)
        if ws.close_code not in (None, 1000):
            self.errors.append(f"control socket closed with {ws.close_code}")

    def _take_mouth_box(self, raw: object) -> None:
        try:
            x0, y0, x1, y1 = (float(v) for v in raw)  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            self.errors.append(f"hello.mouth_box {raw!r} is not 4 numbers; using the default")
            return
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            self.errors.append(f"hello.mouth_box {raw!r} is not inside 0..1; using the default")
            return
        self.mouth_box = (x0, y0, x1, y1)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await ws.send_json({"type": "ping", "t": round(self.clock() - self.t0, 3)})
            await asyncio.sleep(_PING_EVERY_S)

    async def _speak(self, pcm: np.ndarray) -> tuple[float, float, float]:
        """Play ``pcm``; (on-air start, voiced start, voiced end), monotonic seconds."""
        pb = self.mic.play(pcm)
        start = await pb.started
        v0, v1 = voiced_span(pcm)
        return start, start + v0, start + v1

    async def _wait_greeting(self) -> None:
        o = self.o
        speaking = await self.events.wait(
            "state", after=self.t0, within=_GREETING_START_S, state="speaking"
        )
        if speaking is None:
            return
        if (
            await self.events.wait("state", after=speaking, within=o.timeout_s, state="listening")
            is None
        ):
            self.errors.append(f"greeting did not finish within {o.timeout_s:g} s; asking anyway")

    async def _wait_quiet(self) -> float:
        """Wait until the greeting's audio has been quiet for a while; when idle video starts."""
        deadline = self.clock() + self.o.timeout_s
        while True:
            now = self.clock()
            last = self.watch.last_loud_t
            if last is None or now - last >= _QUIET_S or now > deadline:
                break
            await asyncio.sleep(0.05)
        start = now if last is None else last
        return min(start + _VIDEO_LAG_S, now)

    async def _ask(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        o = self.o
        if self.question is not None:
            start, _, end = await self._speak(self.question)
            self.question_start, self.speech_end = start, end
        else:
            self.question_start = self.speech_end = self.clock()
            await ws.send_json({"type": "text", "text": o.text})
        assert self.speech_end is not None
        self.watch.arm(self.speech_end)
        if self.question is not None:
            await asyncio.sleep(max(0.0, self.speech_end - self.clock()))

    async def _interrupt(self) -> float:
        assert self.interrupt is not None
        try:
            await asyncio.wait_for(self.watch.heard.wait(), self.o.timeout_s)
        except TimeoutError:
            self.errors.append(f"no reply audio within {self.o.timeout_s:g} s: not interrupting")
            return self.clock()
        assert self.watch.heard_t is not None
        await asyncio.sleep(
            max(0.0, self.watch.heard_t + self.o.interrupt_after_ms / 1000 - self.clock())
        )
        _, self.interrupt_start, end = await self._speak(self.interrupt)
        await asyncio.sleep(max(0.0, end - self.clock()))
        return end

    async def _listen(self, last_spoken: float) -> None:
        o = self.o
        if o.listen_s is not None:
            await asyncio.sleep(max(0.0, last_spoken + o.listen_s - self.clock()))
            return
        if self.interrupt is not None:
            await asyncio.sleep(max(0.0, last_spoken + 2.0 - self.clock()))
            return
        asked = self.question_start if self.question_start is not None else last_spoken
        speaking = await self.events.wait(
            "state", after=asked, within=o.timeout_s, state="speaking"
        )
        if speaking is None:
            self.errors.append(f"no reply (state speaking) within {o.timeout_s:g} s")
            return
        if (
            await self.events.wait("state", after=speaking, within=o.timeout_s, state="listening")
            is None
        ):
            self.errors.append(f"reply did not finish within {o.timeout_s:g} s")
        await asyncio.sleep(_TAIL_S)

    async def run(self) -> BotReport:
        o = self.o
        if o.wants_loopback():
            enable_loopback_candidates()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(self.mic, direction="sendrecv")
        pc.addTransceiver("video", direction="recvonly")
        pc.on("track", self._on_track)
        if self.recorder is not None:
            self.recorder.start()
        timeout = aiohttp.ClientTimeout(total=o.timeout_s)
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                session = await self._offer(http, pc)
                try:
                    query = {"session": session}
                    if self.session_token:
                        query["token"] = self.session_token
                    ws = await http.ws_connect(f"{o.url.rstrip('/')}/ws", params=query)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise BotError(f"cannot open the control socket: {exc}") from exc
                self.tasks += [
                    asyncio.create_task(self._read_ws(ws)),
                    asyncio.create_task(self._ping(ws)),
                ]
                try:
                    await asyncio.wait_for(self.first_audio.wait(), o.timeout_s)
                except TimeoutError as exc:
                    raise BotError(
                        f"no media from the server within {o.timeout_s:g} s (ICE failed?)"
                    ) from exc
                await self._wait_greeting()
                self.idle_from = await self._wait_quiet()
                await asyncio.sleep(o.settle_s)
                await self._ask(ws)
                last = await self._interrupt() if self.interrupt is not None else self.clock()
                await self._listen(last)
                await ws.close()
        finally:
            await self._teardown(pc)
        record = CallRecord(
            media=self.media,
            events=list(self.events.items),
            t0=self.t0,
            question_start_t=self.question_start,
            speech_end_t=self.speech_end,
            interrupt_start_t=self.interrupt_start,
            idle_from_t=self.idle_from,
            mouth_box=self.mouth_box,
            errors=self.errors,
        )
        return await asyncio.to_thread(
            build_report, record, record_path=str(o.record) if o.record else None
        )

    async def _teardown(self, pc: RTCPeerConnection) -> None:
        self.mic.stop()
        await pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.recorder is not None:
            await self.recorder.close()
