"""An operator's own WebRTC peer to a call they have taken over: their voice in, the caller out.

``POST /operator/calls/{id}/voice`` ``{"sdp", "type": "offer"}`` (operator key, the call taken
over by them) answers with the server's SDP. The operator's microphone is streamed through
the call's renderer onto the call's one A/V timeline (:class:`~signaling.call.live_voice.
LiveVoice`), so the caller hears the operator from the avatar's moving lips; the caller's
microphone, as the call hears it, is sent back to the operator 20 ms at a time. The peer
ends on ``.../voice_off``, on hand-back, when the call ends, or when its connection fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.ingest import INGEST_FRAME_SAMPLES, INGEST_SAMPLE_RATE
from signaling.call.live_voice import VOICE_RATE, LiveVoice, LiveVoiceOptions
from signaling.call.session import Session
from signaling.ice import rtc_configuration

__all__ = ["CallerAudioTrack", "OperatorVoices", "VoicePeer", "operator_audio"]

log = logging.getLogger(__name__)

_MAX_QUEUED = 4  # 20 ms frames of the caller held for the operator (older ones are dropped)
_TIME_BASE = fractions.Fraction(1, INGEST_SAMPLE_RATE)


class CallerAudioTrack(MediaStreamTrack):
    """The caller's microphone for the operator: 20 ms mono frames at 16 kHz, paced in real
    time; silence when the caller sends none, the oldest frames dropped when they pile up
    (the operator hears the caller late by at most ``_MAX_QUEUED`` frames)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._start: float | None = None
        self._k = 0
        self._pts = 0
        self.frames_in = 0
        self.frames_dropped = 0

    def push(self, frame: np.ndarray, now: float) -> None:
        """A mic tap of the call (never raises)."""
        if self.readyState != "live" or len(frame) != INGEST_FRAME_SAMPLES:
            return
        self.frames_in += 1
        if len(self._queue) >= _MAX_QUEUED:
            self._queue.popleft()
            self.frames_dropped += 1
        self._queue.append(frame)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._k += 1
            due = self._start + self._k * 0.02
            behind = loop.time() - due
            if behind > 0.2:  # a stall: start over from now rather than burst
                self._start, self._k = loop.time(), 0
            elif behind < 0:
                await asyncio.sleep(-behind)
        samples = self._queue.popleft() if self._queue else np.zeros(INGEST_FRAME_SAMPLES, np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = INGEST_SAMPLE_RATE
        frame.pts = self._pts
        self._pts += INGEST_FRAME_SAMPLES
        frame.time_base = _TIME_BASE
        return frame


async def operator_audio(track: MediaStreamTrack) -> AsyncIterator[np.ndarray]:
    """The operator's microphone as 48 kHz mono int16 pieces, until the track ends."""
    resampler: av.AudioResampler | None = None
    key: tuple[str, str, int] | None = None
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(f"expected audio from the operator, got {type(frame).__name__}")
        now_key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or now_key != key:
            resampler, key = (
                av.AudioResampler(format="s16", layout="mono", rate=VOICE_RATE),
                now_key,
            )
        frame.pts = None
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)


@dataclass(eq=False)
class VoicePeer:
    """One operator's voice peer on one call."""

    session: Session
    operator: str
    pc: RTCPeerConnection
    caller: CallerAudioTrack
    voice: LiveVoice
    on_end: Callable[[VoicePeer, str], None]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    opened_at: float = field(default_factory=time.time)
    answered: bool = False  # the offer was good (its end is then recorded)
    ended: bool = False

    def start_voice(self, track: MediaStreamTrack) -> None:
        task = asyncio.get_running_loop().create_task(self._speak(track))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _speak(self, track: MediaStreamTrack) -> None:
        try:
            await self.voice.run(operator_audio(track))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: the operator's voice failed", self.session.id)
            await self.close("the operator's voice failed")
            return
        await self.close("the operator's microphone ended")

    async def close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.session.handoff.voice_live = False
        with contextlib.suppress(ValueError):
            self.session.mic_taps.remove(self.caller.push)
        self.caller.stop()
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        self.on_end(self, reason)
        try:
            await self.pc.close()
        except Exception:
            log.exception("call %s: closing the operator's peer failed", self.session.id)


class OperatorVoices:
    """The voice peers of this process, at most one per call."""

    def __init__(
        self,
        *,
        ice_servers: list[dict[str, object]],
        options: LiveVoiceOptions | None = None,
        on_end: Callable[[str, str, str, dict[str, float]], None] = lambda *_: None,
    ) -> None:
        self._ice_servers = list(ice_servers)
        self._options = options
        self._on_end = on_end
        self.peers: dict[str, VoicePeer] = {}

    async def connect(
        self, session: Session, operator: str, offer: RTCSessionDescription
    ) -> RTCSessionDescription:
        """Answer ``operator``'s offer on ``session`` (a peer they had before is replaced).
        ValueError: the offer cannot be used (no audio, malformed SDP)."""
        if "m=audio" not in offer.sdp:
            raise ValueError("the offer has no audio (m=audio) section")
        old = self.peers.get(session.id)
        if old is not None:
            await old.close("replaced by a new voice peer")
        options = self._options or LiveVoiceOptions(fps=session.options.fps)
        voice = LiveVoice(
            options,
            renderer=session.renderer,
            sink=session.player,
            now=session.clock.now,
            interrupt=session.handoff.stop_speech,
            on_spurt=lambda audio: session.operator_spoke(audio, rate=VOICE_RATE),
        )
        pc = RTCPeerConnection(rtc_configuration(self._ice_servers))  # type: ignore[arg-type]
        peer = VoicePeer(session, operator, pc, CallerAudioTrack(), voice, self._ended)
        self.peers[session.id] = peer
        pc.on("track", lambda track: peer.start_voice(track) if track.kind == "audio" else None)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await peer.close(f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(offer)
            pc.addTrack(peer.caller)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            await peer.close("a bad offer")
            raise ValueError(f"cannot use this offer: {exc}") from exc
        peer.answered = True
        session.mic_taps.append(peer.caller.push)
        session.handoff.voice_live = True
        watcher = asyncio.get_running_loop().create_task(self._watch(peer))
        peer.tasks.add(watcher)
        watcher.add_done_callback(peer.tasks.discard)
        return pc.localDescription

    async def _watch(self, peer: VoicePeer) -> None:
        """End the peer with the call, or when the call is no longer theirs."""
        handoff = peer.session.handoff
        while not peer.session.closed.is_set():
            if handoff.operator != peer.operator:
                await peer.close("the call is no longer taken over by them")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer.session.closed.wait(), 0.25)
        await peer.close("the call ended")

    def _ended(self, peer: VoicePeer, reason: str) -> None:
        if self.peers.get(peer.session.id) is peer:
            del self.peers[peer.session.id]
        if not peer.answered:
            return
        stats = peer.voice.stats
        detail = {
            "seconds": round(time.time() - peer.opened_at, 3),
            "voiced_s": round(stats.voiced_s, 3),
            "spurts": float(stats.spurts),
        }
        log.info("call %s: operator voice off (%s)", peer.session.id, reason)
        self._on_end(peer.session.id, peer.operator, reason, detail)

    async def close(self, call_id: str, reason: str) -> bool:
        """End the voice peer of ``call_id``; False when it has none."""
        peer = self.peers.get(call_id)
        if peer is None:
            return False
        await peer.close(reason)
        return True

    async def close_all(self) -> None:
        for peer in list(self.peers.values()):
            await peer.close("the server is stopping")
