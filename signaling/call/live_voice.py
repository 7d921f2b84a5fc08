"""A person's live voice through the avatar: an operator's microphone, streamed.

:class:`LiveVoice` reads the operator's audio (48 kHz mono int16, any piece sizes), cuts it
into chunks of a few video frames, has the call's renderer draw the lips for each chunk and
pushes the chunk's audio and frames together onto the call's A/V timeline (the same
:class:`~signaling.call.turn.MediaSink` a reply turn uses), so voice and lips cannot drift.
Only talk spurts are rendered (a VAD with a hangover); between them the idle loop plays.
The first voiced frame of a spurt stops whatever the avatar was saying (``interrupt``).
Each spurt's audio, once it ends, goes to ``on_spurt`` (the call transcribes it, so the
operator's spoken lines reach the transcript and the call records).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import webrtcvad

from inference.audio import fit_length, resample_int16
from inference.render.base import RENDER_RATE, Renderer, seeker
from signaling.call.turn import MediaSink

__all__ = ["LiveVoice", "LiveVoiceOptions", "LiveVoiceStats"]

log = logging.getLogger(__name__)

VOICE_RATE = 48000
_VAD_FRAME = VOICE_RATE // 50  # 20 ms
_MAX_SPURT_S = 30.0  # a longer spurt is handed on in pieces of this length


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveVoiceOptions:
    """``chunk_frames``: video frames rendered at a time (the chunk's length is the voice's
    added delay); ``hangover_ms``: quiet after speech still sent (word gaps stay voiced);
    ``vad_mode``: webrtcvad aggressiveness 0..3; ``fps``: the call's frame rate."""

    fps: int = 25
    chunk_frames: int = 4
    hangover_ms: int = 400
    vad_mode: int = 2

    def __post_init__(self) -> None:
        if self.fps <= 0 or VOICE_RATE % self.fps or RENDER_RATE % self.fps:
            raise ValueError(f"fps {self.fps} must divide {VOICE_RATE} and {RENDER_RATE}")
        if not 1 <= self.chunk_frames <= 25:
            raise ValueError(f"chunk_frames must be 1..25, got {self.chunk_frames}")
        if not 0 <= self.hangover_ms <= 5000:
            raise ValueError(f"hangover_ms must be 0..5000, got {self.hangover_ms}")
        if self.vad_mode not in (0, 1, 2, 3):
            raise ValueError(f"vad_mode must be 0..3, got {self.vad_mode}")

    @property
    def chunk_samples(self) -> int:
        """48 kHz samples per rendered chunk."""
        return self.chunk_frames * VOICE_RATE // self.fps


@dataclass(slots=True)
class LiveVoiceStats:
    """What the voice did: spurts begun, chunks pushed, seconds of voice, the last chunk's
    delay from its last sample's arrival to the clock time it starts playing."""

    spurts: int = 0
    chunks: int = 0
    voiced_s: float = 0.0
    last_delay_s: float = math.nan


class LiveVoice:
    """Streams one operator's voice into one call's timeline (run it as the call's task)."""

    def __init__(
        self,
        options: LiveVoiceOptions,
        *,
        renderer: Renderer,
        sink: MediaSink,
        now: Callable[[], float],
        interrupt: Callable[[], None],
        on_spurt: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.options = options
        self._on_spurt = on_spurt
        self._spurt: list[np.ndarray] = []  # the audio of the spurt in progress
        self._renderer = renderer
        self._sink = sink
        self._now = now
        self._interrupt = interrupt
        self._vad = webrtcvad.Vad(options.vad_mode)
        self._hangover = max(0, options.hangover_ms // 20)
        self._quiet = self._hangover + 1  # 20 ms frames since the last voiced one
        self._pending = np.zeros(0, dtype=np.int16)  # not yet cut into 20 ms frames
        self._chunk: list[np.ndarray] = []
        self._chunk_voiced = False
        self._own_until = 0.0
        self.stats = LiveVoiceStats()

    @property
    def talking(self) -> bool:
        """True during a talk spurt (its hangover included)."""
        return self._quiet <= self._hangover

    async def run(self, audio: AsyncIterator[np.ndarray]) -> None:
        """Consume ``audio`` (48 kHz mono int16 pieces) until it ends."""
        async for piece in audio:
            await self.feed(piece)
        self._spurt_ends()

    async def feed(self, piece: np.ndarray) -> None:
        """Take one piece of the operator's audio; renders and pushes every chunk it fills."""
        if piece.dtype != np.int16 or piece.ndim != 1:
            raise ValueError("operator audio must be 1-D int16 at 48 kHz")
        data = np.concatenate([self._pending, piece]) if len(self._pending) else piece
        n = len(data) // _VAD_FRAME
        self._pending = data[n * _VAD_FRAME :].copy()
        for i in range(n):
            await self._frame(data[i * _VAD_FRAME : (i + 1) * _VAD_FRAME])

    async def _frame(self, frame: np.ndarray) -> None:
        voiced = self._vad.is_speech(frame.tobytes(), VOICE_RATE)
        was_talking = self.talking
        self._quiet = 0 if voiced else self._quiet + 1
        if voiced and not was_talking:
            self._spurt_begins()
        if self.talking:
            self._spurt.append(frame)
            if len(self._spurt) * _VAD_FRAME >= _MAX_SPURT_S * VOICE_RATE:
                self._spurt_ends()
        elif was_talking:
            self._spurt_ends()
        if not self.talking and not self._chunk:
            return  # quiet between spurts: the idle loop plays
        self._chunk.append(frame)
        self._chunk_voiced = self._chunk_voiced or voiced
        if sum(len(f) for f in self._chunk) >= self.options.chunk_samples:
            await self._push_chunk()

    def _spurt_ends(self) -> None:
        """Hand the spurt's audio (48 kHz int16) to ``on_spurt``; it never raises here."""
        spurt, self._spurt = self._spurt, []
        if not spurt or self._on_spurt is None:
            return
        try:
            self._on_spurt(np.concatenate(spurt))
        except Exception:
            log.exception("live voice: handing on a talk spurt failed")

    def _spurt_begins(self) -> None:
        self.stats.spurts += 1
        now = self._now()
        own_playing = self._own_until > now and self._sink.busy_until <= self._own_until + 1e-6
        if not own_playing:
            self._interrupt()  # the agent (or a typed line) stops: the person talks
        timeline = seeker(self._renderer)
        if timeline is not None and self._sink.busy_until <= now:
            timeline.seek(math.floor(self._sink.next_start() * self.options.fps + 1e-6))

    async def _push_chunk(self) -> None:
        audio = np.concatenate(self._chunk)
        self._chunk = []
        voiced, self._chunk_voiced = self._chunk_voiced, False
        arrived = self._now()
        opts = self.options
        frames_out: list[np.ndarray] = []
        render_in = fit_length(
            resample_int16(audio, VOICE_RATE, RENDER_RATE),
            opts.chunk_frames * RENDER_RATE // opts.fps,
        )
        async for batch in self._renderer.render(render_in):
            frames_out.extend(batch)
        frames_out = frames_out[: opts.chunk_frames]
        if not frames_out:
            log.warning("live voice: the renderer drew no frame for a chunk; it is skipped")
            return
        per_frame = VOICE_RATE // opts.fps
        start = self._sink.push(fit_length(audio, len(frames_out) * per_frame), frames_out)
        self._own_until = self._sink.busy_until
        self.stats.chunks += 1
        if voiced:
            self.stats.voiced_s += len(audio) / VOICE_RATE
        self.stats.last_delay_s = start - arrived
