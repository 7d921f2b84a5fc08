"""``MuseTalkRenderer``: the per-call ``Renderer`` view on a shared engine and scheduler.

A renderer is cheap: it holds the avatar's key, its call's session on the device's
``RenderScheduler`` and a little audio context. ``render`` turns one piece of reply audio
into per-frame audio windows (on the scheduler's audio lane: its own thread and CUDA
stream), submits every frame with its deadline (on screen ``start_latency_s`` after the
audio arrived, then one frame period apart) and yields the
frames in order as the scheduler's batches finish. Consecutive pieces play back to back,
so a piece's first deadline is the later of that latency and the end of the previous
piece. The previous piece's tail is kept as left audio context, so consecutive pieces of
one reply join smoothly; ``clear`` (barge-in) drops it and cancels the frames not yet
rendered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inference.avatar.model import PreparedAvatar
from inference.render.base import render_plan
from inference.render.musetalk.audio import (
    SAMPLE_RATE,
    AudioFeatureStream,
    AudioWindowOptions,
    frame_count,
    windows_for_audio,
)
from inference.render.musetalk.engine import FrameJob, MuseTalkEngine
from inference.render.scheduler import RenderScheduler

__all__ = ["MuseTalkRenderer", "RendererOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RendererOptions:
    """Per-call rendering options."""

    output_height: int | None = None  # None: the source height
    start_latency_s: float = 0.3  # deadline of the first frame after its audio arrives
    yield_frames: int = 5  # frames per yielded list
    carry_context: bool = True  # previous piece's tail as left audio context
    audio: AudioWindowOptions = field(default_factory=AudioWindowOptions)

    def __post_init__(self) -> None:
        if self.output_height is not None and self.output_height < 16:
            raise ValueError("output_height must be >= 16")
        if self.start_latency_s < 0 or self.yield_frames < 1:
            raise ValueError("start_latency_s must be >= 0 and yield_frames >= 1")


def _even(x: float) -> int:
    return max(2, round(x / 2.0) * 2)


class MuseTalkRenderer:
    """Implements ``inference.render.base.Renderer`` for one call."""

    def __init__(
        self,
        avatar: PreparedAvatar,
        engine: MuseTalkEngine,
        scheduler: RenderScheduler,
        *,
        session: str,
        options: RendererOptions | None = None,
    ) -> None:
        self.options = options or RendererOptions()
        self.fps = self.options.audio.fps
        self._avatar = avatar
        self._engine = engine
        self._scheduler = scheduler
        self._session = session
        engine.avatar(avatar.name)  # raises KeyError if the avatar was not added
        self._height = self.options.output_height or avatar.size[1]
        self._frame_no = 0
        self._render_fps = self.fps
        self._play_end = 0.0  # scheduler-clock time the frames submitted so far finish playing
        self._tail = np.zeros(0, dtype=np.int16)
        self._outstanding: set[Future[Any]] = set()
        scheduler.open_session(session, fps=float(self.fps))

    # ---- Renderer protocol ---------------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        w, h = self._avatar.size
        if self._height == h:
            return w, h
        return _even(w * self._height / h), _even(self._height)

    def set_output_height(self, height: int) -> None:
        if height < 16:
            raise ValueError(f"output height must be >= 16, got {height}")
        self._height = min(int(height), self._avatar.size[1])

    @property
    def render_fps(self) -> int:
        return self._render_fps

    def set_render_fps(self, fps: int) -> None:
        """Render only ``fps`` frames per second (a low quality rung); each is repeated to
        fill ``self.fps``. The scheduler counts this call's demand at the lower rate."""
        if fps <= 0:
            raise ValueError(f"render fps must be positive, got {fps}")
        self._render_fps = min(int(fps), self.fps)
        self._scheduler.open_session(self._session, fps=float(self._render_fps))

    def idle_frames(self) -> Sequence[np.ndarray]:
        size = self.frame_size
        frames = self._avatar.frames
        if size == self._avatar.size:
            return list(frames)
        return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]

    async def render(self, audio_16k: np.ndarray) -> AsyncGenerator[list[np.ndarray], None]:
        if audio_16k.ndim != 1 or audio_16k.dtype != np.int16:
            raise ValueError("render() takes 1-D int16 audio at 16 kHz")
        if len(audio_16k) == 0:
            return
        opts = self.options
        tail = self._tail if opts.carry_context else self._tail[:0]
        joined = np.concatenate([tail, audio_16k])
        windows = await asyncio.wrap_future(self._scheduler.call_audio(self._windows, joined))
        skip = len(tail) * self.fps // SAMPLE_RATE
        windows = windows[skip : skip + frame_count(len(audio_16k), self.fps)]
        self._remember_tail(audio_16k)
        futures = self._submit(windows)
        async for frames in self._collect(futures):
            yield frames

    # ---- extras ----------------------------------------------------------------------------
    async def render_stream(
        self, chunks: AsyncIterator[np.ndarray]
    ) -> AsyncIterator[list[np.ndarray]]:
        """Render a stream of audio chunks of one utterance; boundaries are invisible."""
        stream = AudioFeatureStream(self._engine.audio, self.options.audio)
        pending: list[Future[Any]] = []
        async for chunk in chunks:
            windows = await asyncio.wrap_future(self._scheduler.call_audio(stream.push, chunk))
            pending.extend(self._submit(windows))
            while len(pending) >= self.options.yield_frames:
                head, pending = (
                    pending[: self.options.yield_frames],
                    pending[self.options.yield_frames :],
                )
                yield [await self._wait(f) for f in head]
        pending.extend(
            self._submit(await asyncio.wrap_future(self._scheduler.call_audio(stream.end)))
        )
        async for frames in self._collect(pending):
            yield frames

    def clear(self) -> None:
        """Barge-in: cancel frames not rendered yet and forget the audio context."""
        for fut in list(self._outstanding):
            fut.cancel()
        self._outstanding.clear()
        self._tail = np.zeros(0, dtype=np.int16)
        self._play_end = 0.0

    def close(self) -> None:
        self.clear()
        self._scheduler.close_session(self._session)

    # ---- internals -----------------------------------------------------------------------
    def _windows(self, audio: np.ndarray) -> Any:
        return windows_for_audio(self._engine.audio, audio, self.options.audio)

    def _remember_tail(self, audio: np.ndarray) -> None:
        o = self.options.audio
        per_frame = SAMPLE_RATE // self.fps
        want = o.left_context_s + o.left_frames / self.fps + o.block_s
        keep = int(np.ceil(want * self.fps)) * per_frame
        joined = np.concatenate([self._tail, audio])
        usable = len(joined) - len(joined) % per_frame  # keep frame alignment
        self._tail = joined[max(0, usable - keep) : usable]

    def _cycle_index(self, frame_no: int) -> int:
        n = self._avatar.num_frames
        if n == 1:
            return 0
        period = 2 * n - 2
        t = frame_no % period
        return t if t < n else period - t

    def _submit(self, windows: Any) -> list[Future[Any]]:
        n = int(windows.shape[0])
        if n == 0:
            return []
        size = self.frame_size
        out_size = None if size == self._avatar.size else size
        start = max(self._scheduler.clock() + self.options.start_latency_s, self._play_end)
        self._play_end = start + n / self.fps
        plan = render_plan(n, self.fps, self._render_fps)
        first_use: dict[int, int] = {}  # rendered frame -> the first output frame showing it
        for i, j in enumerate(plan):
            first_use.setdefault(j, i)
        rendered: dict[int, Future[Any]] = {}
        for j, i in first_use.items():
            job = FrameJob(
                self._avatar.name, self._cycle_index(self._frame_no + j), windows[j], out_size
            )
            rendered[j] = self._scheduler.submit(
                self._session, self._frame_no + j, job, start + i / self.fps
            )
        self._frame_no += n
        self._outstanding.update(rendered.values())
        return [rendered[j] for j in plan]

    async def _wait(self, fut: Future[Any]) -> np.ndarray:
        try:
            return await asyncio.wrap_future(fut)
        finally:
            self._outstanding.discard(fut)

    async def _collect(self, futures: list[Future[Any]]) -> AsyncIterator[list[np.ndarray]]:
        step = self.options.yield_frames
        try:
            for i in range(0, len(futures), step):
                yield [await self._wait(f) for f in futures[i : i + step]]
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
                self._outstanding.discard(f)
