"""A light WebRTC caller for load, soak and liveness tests: a silent mic, typed questions,
received frames counted (no recording, no analysis), reconnect and resume.

``ProbeCall`` speaks the protocol of docs/protocol.md exactly as a page does; the recording
bot (:mod:`signaling.client.bot`) is the heavy, measuring client. :func:`process_stats` reads this
process's RSS, open descriptors, threads and asyncio tasks (Linux ``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from signaling.ice import enable_loopback_candidates, is_loopback_host

__all__ = ["OfferRefused", "ProbeCall", "ProbeOptions", "process_stats", "soak"]


class OfferRefused(RuntimeError):
    """``/offer`` (or ``/session``) answered with an error status."""

    def __init__(self, status: int, reason: str, retry_after: str | None) -> None:
        super().__init__(f"refused ({status}): {reason}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeOptions:
    url: str
    token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    avatar: str | None = None
    origin: str | None = None  # sent as the Origin header, as a page would
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"ProbeOptions.url must be http(s)://host:port, got {self.url!r}")
        if self.timeout_s <= 0:
            raise ValueError("ProbeOptions.timeout_s must be positive")


class ProbeCall:
    """One call. Use as ``async with ProbeCall(options) as call: await call.ask("...")``."""

    def __init__(
        self, options: ProbeOptions, *, mic: Callable[[], MediaStreamTrack] | None = None
    ) -> None:
        self.o = options
        self._make_mic = mic or AudioStreamTrack  # each peer connection gets a new one
        self.mic: MediaStreamTrack | None = None
        self.base = options.url.rstrip("/")
        self.session_id = ""
        self.session_token = ""
        self.events: list[dict[str, Any]] = []
        self.video_times: list[float] = []
        self.audio_frames = 0
        self.pc: RTCPeerConnection | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self.ws_close_code: int | None = None

    async def __aenter__(self) -> ProbeCall:
        try:
            await self.connect()
        except BaseException:
            await self.hang_up()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            headers = {"Origin": self.o.origin} if self.o.origin else None
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.o.timeout_s), headers=headers
            )
        return self._http

    # ---- setup -------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any] | None, **headers: str) -> Any:
        async with self.http.post(self.base + path, json=body, headers=headers) as r:
            text = await r.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = {"error": text[:200]}
            if r.status != 200:
                reason = data.get("error", "") if isinstance(data, dict) else str(data)
                raise OfferRefused(r.status, reason, r.headers.get("Retry-After"))
            return data

    async def access_token(self) -> str | None:
        if self.o.api_key is None:
            return self.o.token
        data = await self._post("/session", None, Authorization=f"Bearer {self.o.api_key}")
        return str(data["token"])

    def _new_pc(self) -> RTCPeerConnection:
        if is_loopback_host(self.o.url):
            enable_loopback_candidates()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = self._make_mic()  # a silent mic unless the caller gave another
        pc.addTransceiver(self.mic, direction="sendrecv")
        pc.addTransceiver("video", direction="recvonly")
        connected = asyncio.Event()
        self._connected = connected

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        return pc

    async def _negotiate(self, body: dict[str, Any]) -> None:
        pc = self._new_pc()
        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer", **body}
        try:
            answer = await self._post("/offer", body)
        except BaseException:
            await pc.close()
            raise
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        old, self.pc = self.pc, pc
        if old is not None:
            await old.close()
        self.session_id = str(answer["session"])
        self.session_token = str(answer.get("token", ""))

    async def connect(self) -> None:
        """Offer/answer and the control socket (the peer connects in the background)."""
        body: dict[str, Any] = {}
        token = await self.access_token()
        if token:
            body["token"] = token
        if self.o.avatar:
            body["avatar"] = self.o.avatar
        await self._negotiate(body)
        await self.open_ws()

    async def open_ws(self) -> None:
        query = {"session": self.session_id, "token": self.session_token}
        self.ws = await self.http.ws_connect(self.base + "/ws", params=query)
        self._tasks.append(asyncio.ensure_future(self._read(self.ws)))

    async def resume(self) -> None:
        """Continue the call on a new peer connection (``/offer`` with ``session``)."""
        await self._negotiate({"session": self.session_id, "token": self.session_token})

    async def drop_ws(self) -> None:
        """Lose the control socket without a close handshake (as a network drop does)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            transport = ws._response.connection.transport if ws._response.connection else None
            if transport is not None:
                transport.abort()
            with contextlib.suppress(Exception):
                await ws.close()

    async def vanish(self) -> None:
        """Go silent as a closed tab or a pulled cable looks to the server: the socket drops
        without a close handshake and no more mic media arrives (the peer stays open)."""
        await self.drop_ws()
        if self.pc is not None:
            for sender in self.pc.getSenders():
                if sender.track is not None:
                    sender.track.stop()

    # ---- media and events --------------------------------------------------------------
    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                if track.kind == "video":
                    self.video_times.append(time.monotonic())
                else:
                    self.audio_frames += 1

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(msg.data)
                if isinstance(event, dict):
                    async with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
        self.ws_close_code = ws.close_code

    async def wait_event(self, kind: str, *, start: int = 0, **fields: Any) -> int:
        """Index of the first event at or after ``start`` of type ``kind`` with ``fields``."""

        def find() -> int | None:
            for i in range(start, len(self.events)):
                e = self.events[i]
                if e.get("type") == kind and all(e.get(k) == v for k, v in fields.items()):
                    return i
            return None

        async def wait() -> int:
            async with self._changed:
                await self._changed.wait_for(lambda: find() is not None)
            found = find()
            assert found is not None
            return found

        return await asyncio.wait_for(wait(), self.o.timeout_s)

    async def wait_connected(self) -> None:
        await asyncio.wait_for(self._connected.wait(), self.o.timeout_s)

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws is None:
            raise RuntimeError("no control socket")
        await self.ws.send_json(message)

    async def ask(self, text: str, *, wait_end: bool = True) -> str:
        """Type ``text``; wait for the reply to start (and end); returns the reply text."""
        start = len(self.events)
        await self.send({"type": "text", "text": text})
        speaking = await self.wait_event("state", start=start, state="speaking")
        if wait_end:
            await self.wait_event("state", start=speaking, state="listening")
        said = [e for e in self.events[start:] if e.get("type") == "reply_text"]
        return " ".join(str(e.get("text", "")) for e in said)

    def fps(self, since: float, until: float) -> float:
        frames = sum(1 for t in self.video_times if since <= t < until)
        return frames / max(until - since, 1e-6)

    def worst_window_fps(self, since: float, until: float, window_s: float = 1.0) -> float:
        worst = float("inf")
        t = since
        while t + window_s <= until + 1e-9:
            worst = min(worst, self.fps(t, t + window_s))
            t += window_s
        return worst if worst != float("inf") else self.fps(since, until)

    async def hang_up(self) -> None:
        """Close the control socket with 1000 (the server ends the call) and the peer."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(code=1000, message=b"hang up")
            self.ws = None
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
        self.pc = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None


def process_stats() -> dict[str, float]:
    """RSS (MiB), open file descriptors, threads (of which executor pool threads) and asyncio
    tasks of this process."""
    rss_kb = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    threads = threading.enumerate()
    return {
        "rss_mb": rss_kb / 1024.0,
        "fds": float(len(os.listdir("/proc/self/fd"))),
        "threads": float(len(threads)),
        # the event loop's default executor (asyncio.to_thread): grows on demand up to its cap
        "pool_threads": float(sum(t.name.startswith("asyncio_") for t in threads)),
        "tasks": float(tasks),
    }


async def soak(
    url: str,
    cycles: int,
    *,
    question: str = "What are your opening hours?",
    full_reply: bool = False,
    active: Callable[[], int] | None = None,
    on_cycle: Callable[[int, dict[str, float]], None] | None = None,
    timeout_s: float = 30.0,
) -> list[dict[str, float]]:
    """``cycles`` × (connect, wait for media, ask, hear the reply start (or end), hang up).

    After each cycle it waits (bounded) until ``active()`` — the server's call count, when
    the server is in this process — is 0, collects garbage and samples
    :func:`process_stats`; returns the samples (index 0 before the first cycle).
    """
    samples = [process_stats()]
    for i in range(cycles):
        async with ProbeCall(ProbeOptions(url=url, timeout_s=timeout_s)) as call:
            await call.wait_connected()
            reply = await call.ask(question, wait_end=full_reply)
            if not reply:
                raise RuntimeError(f"cycle {i + 1}: no reply text")
        for _ in range(int(timeout_s / 0.05)):
            if active is None or active() == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let closing transports and tasks finish
        gc.collect()
        sample = process_stats()
        samples.append(sample)
        if on_cycle is not None:
            on_cycle(i + 1, sample)
    return samples
