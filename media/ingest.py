"""Caller microphone ingest: remote aiortc audio → 16 kHz mono int16, exact 20 ms frames.

A receive task reads the remote track as fast as frames arrive, resamples them with
``av.AudioResampler`` (any input format, layout or rate; a change mid-stream rebuilds the
resampler) and re-chunks them into 320-sample frames. Between that task and the consumer
is a bounded buffer that drops the *oldest* frames when the consumer lags, so the mic path
never accumulates latency; ``frames_dropped`` counts them. The receive task ends with the
iteration (track ended, consumer cancelled or gone) or on :meth:`MicIngest.close`; it is
never left pending.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["INGEST_FRAME_SAMPLES", "INGEST_SAMPLE_RATE", "MicIngest"]

INGEST_SAMPLE_RATE = 16000
INGEST_FRAME_SAMPLES = 320  # 20 ms at 16 kHz


class MicIngest:
    """Async iterator of 20 ms int16 frames (shape ``(320,)``) from a remote audio track.

    Iterate it once (``async for frame in MicIngest(track)``); iteration ends when the track
    ends (``MediaStreamError``) or after :meth:`close`. A consumer that stops iterating (it
    is cancelled, breaks out) stops the receive task too; ``await close()`` also waits for
    it to end. ``max_buffered`` bounds the frames waiting for the consumer (default 25 = 0.5 s).
    """

    def __init__(self, track: MediaStreamTrack, *, max_buffered: int = 25) -> None:
        if track.kind != "audio":
            raise ValueError(f"MicIngest needs an audio track, got kind {track.kind!r}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered}")
        self._track = track
        self._buffer: deque[np.ndarray] = deque()
        self._max = max_buffered
        self._wakeup = asyncio.Event()
        self._ended = False
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self.frames_received = 0  # av frames read from the track
        self.frames_out = 0  # 20 ms frames handed to the consumer
        self.frames_dropped = 0  # 20 ms frames dropped because the consumer lagged

    @property
    def buffered(self) -> int:
        """20 ms frames waiting for the consumer."""
        return len(self._buffer)

    def start(self) -> None:
        """Start the receive task (done on first iteration if not called)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._receive())

    async def close(self) -> None:
        """Stop receiving and wait until the receive task has ended; a running iteration ends
        after the buffered frames."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # a cancellation of the caller still propagates
        self._finish()

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        self.start()
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[np.ndarray]:
        try:
            while True:
                if self._buffer:
                    self.frames_out += 1
                    yield self._buffer.popleft()
                    continue
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:  # the consumer is done (or cancelled): nobody reads what is received
            if self._task is not None and not self._task.done():
                self._task.cancel()

    async def _receive(self) -> None:
        try:
            while True:
                try:
                    frame = await self._track.recv()
                except MediaStreamError:
                    break
                if not isinstance(frame, av.AudioFrame):
                    raise TypeError(f"expected av.AudioFrame from the track, got {type(frame)}")
                self.frames_received += 1
                self._add(self._resample(frame))
        except Exception as exc:  # handed to the consumer, which raises it
            self._error = exc
        finally:
            self._finish()

    def _finish(self) -> None:
        self._ended = True
        self._wakeup.set()

    def _resample(self, frame: av.AudioFrame) -> np.ndarray:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or key != self._input_key:
            self._resampler = av.AudioResampler(
                format="s16", layout="mono", rate=INGEST_SAMPLE_RATE
            )
            self._input_key = key
        frame.pts = None  # the timeline is the sample count; gaps are the sender's business
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    def _add(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        n = len(data) // INGEST_FRAME_SAMPLES
        for i in range(n):
            chunk = data[i * INGEST_FRAME_SAMPLES : (i + 1) * INGEST_FRAME_SAMPLES].copy()
            if len(self._buffer) >= self._max:
                self._buffer.popleft()
                self.frames_dropped += 1
            self._buffer.append(chunk)
        self._pending = data[n * INGEST_FRAME_SAMPLES :].copy()
        if n:
            self._wakeup.set()
