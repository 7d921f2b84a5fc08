"""Small fakes shared by the cache, preload and barge-in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np


class CountingRenderer:
    """A tiny deterministic renderer that records what it was asked to render."""

    fps = 25

    def __init__(self, delay_s: float = 0.0) -> None:
        self.renders: list[int] = []  # audio lengths
        self.closed = 0  # renders stopped before their end
        self._height = 32
        self._delay_s = delay_s

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._height, self._height

    def set_output_height(self, height: int) -> None:
        self._height = height

    def idle_frames(self) -> Sequence[np.ndarray]:
        return [np.zeros((self._height, self._height, 3), np.uint8)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        import asyncio

        self.renders.append(len(audio_16k))
        n = int(np.ceil(len(audio_16k) / 640))
        padded = np.concatenate([audio_16k, np.zeros(n * 640 - len(audio_16k), np.int16)])
        level = np.abs(padded.astype(np.int32)).reshape(-1, 640).mean(axis=1)
        frames = [np.full((self._height, self._height, 3), int(v) % 256, np.uint8) for v in level]
        finished = False
        try:
            for i in range(0, n, 4):
                await asyncio.sleep(self._delay_s)
                yield frames[i : i + 4]
            finished = True
        finally:
            if not finished:
                self.closed += 1


class ListSink:
    """A MediaSink that records pushes with the time they happened."""

    def __init__(self) -> None:
        self.pushes: list[tuple[int, int]] = []  # (audio samples, frames)

    def push(self, audio: np.ndarray, frames: Sequence[np.ndarray]) -> float:
        self.pushes.append((len(audio), len(frames)))
        return 0.0
