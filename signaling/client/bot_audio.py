"""The recording bot's microphone: audio file loading and a self-paced outgoing track."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = [
    "MIC_RATE",
    "AudioFileError",
    "MicTrack",
    "Playback",
    "load_audio",
    "voiced_span",
]

MIC_RATE = 48_000
_FRAME = 960  # 20 ms at 48 kHz


class AudioFileError(ValueError):
    """The bot's question audio cannot be read or holds no audio."""


def load_audio(path: str | Path) -> np.ndarray:
    """Decode any audio file PyAV reads to 48 kHz mono int16.

    Raises AudioFileError naming the file when it is missing, unreadable or silent-empty.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"audio file not found: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{p}: no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=MIC_RATE)
            parts: list[np.ndarray] = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except AudioFileError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioFileError(f"cannot read audio file {p}: {exc}") from exc
    pcm = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
    if pcm.size < MIC_RATE // 50:
        raise AudioFileError(f"{p}: holds less than 20 ms of audio")
    return pcm


def voiced_span(pcm: np.ndarray, *, rate: int = MIC_RATE) -> tuple[float, float]:
    """Seconds from the start of ``pcm`` to its first and last 20 ms of speech energy.

    A 20 ms block is voiced when its RMS is within 30 dB of the loudest block (and above
    -60 dBFS). The whole clip counts when nothing is voiced.
    """
    block = rate // 50
    n = pcm.size // block
    if n == 0:
        return 0.0, pcm.size / rate
    x = pcm[: n * block].astype(np.float64).reshape(n, block) / 32768.0
    rms = np.sqrt((x * x).mean(axis=1))
    thr = max(1e-3, rms.max() * 10 ** (-30 / 20))
    voiced = np.flatnonzero(rms > thr)
    if voiced.size == 0:
        return 0.0, pcm.size / rate
    return voiced[0] * block / rate, (voiced[-1] + 1) * block / rate


@dataclass(slots=True)
class Playback:
    """One clip queued on the mic; ``started`` is set (monotonic time) once it is on air."""

    pcm: np.ndarray
    started: asyncio.Future[float]
    finished: asyncio.Future[float]
    _pos: int = 0


class MicTrack(MediaStreamTrack):
    """Outgoing 48 kHz mono audio in 20 ms frames paced by its own monotonic clock.

    Plays queued clips back to back, silence otherwise (the Opus encoder needs continuous
    audio). ``play`` returns a Playback whose futures give the on-air start and end times.
    """

    kind = "audio"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._queue: deque[Playback] = deque()
        self._t0: float | None = None
        self._sent = 0

    def play(self, pcm: np.ndarray) -> Playback:
        """Queue mono int16 48 kHz ``pcm`` after anything already queued."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("MicTrack.play needs 1-D int16 PCM at 48 kHz")
        loop = asyncio.get_running_loop()
        pb = Playback(pcm, loop.create_future(), loop.create_future())
        self._queue.append(pb)
        return pb

    def _next_samples(self, now: float) -> np.ndarray:
        out = np.zeros(_FRAME, np.int16)
        filled = 0
        while filled < _FRAME and self._queue:
            pb = self._queue[0]
            if pb._pos == 0 and not pb.started.done():
                pb.started.set_result(now + filled / MIC_RATE)
            take = min(_FRAME - filled, pb.pcm.size - pb._pos)
            out[filled : filled + take] = pb.pcm[pb._pos : pb._pos + take]
            pb._pos += take
            filled += take
            if pb._pos >= pb.pcm.size:
                self._queue.popleft()
                if not pb.finished.done():
                    pb.finished.set_result(now + filled / MIC_RATE)
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = self._clock()
        due = self._t0 + self._sent / MIC_RATE
        wait = due - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.2:  # stalled: restart the clock instead of bursting to catch up
            self._t0 = self._clock() - self._sent / MIC_RATE
        samples = self._next_samples(self._clock())
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = MIC_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, MIC_RATE)
        self._sent += _FRAME
        return frame

    def stop(self) -> None:
        for pb in self._queue:
            for fut in (pb.started, pb.finished):
                if not fut.done():
                    fut.cancel()
        self._queue.clear()
        super().stop()
