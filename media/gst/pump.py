"""The paced reader of an :class:`~media.gst.source.AvSource`: 20 ms of voice and one
frame per video tick, each at its clock time, handed to an :class:`Outlet`.

Both streams are read from the one timeline at the times they are stamped with, so the
voice and the lips leave together. Times given to the outlet are seconds since the pump
started; the element adds the pipeline's running time.
"""

from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

from media.gst.source import SAMPLE_RATE, AvSource

__all__ = ["AUDIO_BLOCK", "Outlet", "fit_frame", "pump"]

AUDIO_BLOCK = SAMPLE_RATE // 50  # 20 ms


class Outlet(Protocol):
    """Where the pump's buffers go; ``False`` from either stops the pump."""

    def video(self, pts_s: float, frame: np.ndarray) -> bool: ...

    def audio(self, pts_s: float, samples: np.ndarray) -> bool: ...


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` as exactly ``size`` (width, height): scaled to fit, centred, black bars."""
    w, h = size
    fh, fw = frame.shape[:2]
    if (fw, fh) == (w, h):
        return frame
    scale = min(w / fw, h / fh)
    nw, nh = max(1, round(fw * scale)), max(1, round(fh * scale))
    scaled = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    if (nw, nh) == (w, h):
        return np.ascontiguousarray(scaled)
    out = np.zeros((h, w, 3), dtype=np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y : y + nh, x : x + nw] = scaled
    return out


async def pump(source: AvSource, outlet: Outlet, *, size: tuple[int, int]) -> None:
    """Read ``source`` in real time until the outlet refuses a buffer (or cancellation).

    Runs on ``source.loop``. Video ticks are on the clock's frame grid (multiples of
    ``1 / fps``), voice blocks on the 20 ms grid; behind time, it catches up without
    skipping, so the stream's timestamps stay continuous.
    """
    clock, fps = source.clock, source.fps
    start = clock.now()
    frame_i = math.ceil(start * fps - 1e-9)
    block_i = math.ceil(start * SAMPLE_RATE / AUDIO_BLOCK - 1e-9)
    while True:
        t_video = frame_i / fps
        t_audio = block_i * AUDIO_BLOCK / SAMPLE_RATE
        t = min(t_video, t_audio)
        while clock.now() < t - 1e-4:
            await clock.sleep_until(t)
        if t_audio <= t_video:
            samples = source.audio_at(t_audio, AUDIO_BLOCK)
            if not outlet.audio(t_audio - start, samples):
                return
            block_i += 1
        else:
            frame = fit_frame(source.frame_at(t_video), size)
            if not outlet.video(t_video - start, frame):
                return
            frame_i += 1
