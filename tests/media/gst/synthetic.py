"""A synthetic :class:`~media.gst.source.AvSource` for the element's plumbing tests.

Tone bursts of irregular, never repeating lengths, and frames whose mouth box is bright
exactly while a burst plays: any A/V offset the pipeline adds shows up between the received
audio envelope and the received mouth brightness. Its clock is an ``OutputTime`` like a
stream's.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from media.analysis import MouthBox
from media.clock import MediaClock
from media.gst.source import SAMPLE_RATE, OutputTime

__all__ = ["MOUTH_BOX", "BurstSource"]

MOUTH_BOX: MouthBox = (0.3, 0.55, 0.7, 0.9)
_SEED = 7  # bursts and pauses of 0.15..0.6 s, never repeating within a test


class BurstSource:
    """Bursts of a 440 Hz tone, lips (a bright box) open while it sounds."""

    def __init__(self, *, fps: int = 25, size: tuple[int, int] = (256, 256)) -> None:
        self.fps = fps
        self.size = size
        self.time = OutputTime()
        self.clock = MediaClock(time_fn=self.time)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        lengths = np.random.default_rng(_SEED).uniform(0.15, 0.6, size=800)
        self._edges = np.cumsum(lengths)  # ~300 s of bursts (even segments) and pauses

    def sounding(self, t: np.ndarray) -> np.ndarray:
        """Whether the tone sounds at clock times ``t`` (an aperiodic on/off pattern, so the
        audio and the picture line up at one lag only)."""
        segment = np.searchsorted(self._edges, t, side="right")
        return np.asarray(segment % 2 == 0)

    def audio_at(self, t: float, n: int) -> np.ndarray:
        times = t + np.arange(n) / SAMPLE_RATE
        tone = 0.4 * np.sin(2 * np.pi * 440.0 * times) * self.sounding(times)
        return (tone * 32767).astype(np.int16)

    def frame_at(self, t: float) -> np.ndarray:
        w, h = self.size
        frame = np.full((h, w, 3), 90, np.uint8)
        if self.sounding(np.array([t + 0.5 / self.fps]))[0]:
            x0, y0, x1, y1 = MOUTH_BOX
            frame[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = 230
        return frame

    def resume(self) -> None:
        self.time.resume()

    def pause(self) -> None:
        self.time.pause()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=2)
