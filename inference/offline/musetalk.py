"""MuseTalk for the offline renderer: the engine driven directly, batches sized by memory.

The real-time ``MuseTalkService`` schedules frames against play-out deadlines and drops the
late ones; an offline render wants every frame and the largest batches the GPU holds. So
this drives a ``MuseTalkEngine`` from one owned worker thread: per clip it computes the
audio windows, then runs batches of ``engine.max_batch_size()`` frames (measured from the
free device memory after warm-up), halving the batch on out-of-memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np

from inference.avatar.model import PreparedAvatar
from inference.render.base import Renderer
from inference.render.warp import pingpong_index

__all__ = ["MuseTalkFrames", "MuseTalkFramesOptions"]

_log = logging.getLogger(__name__)
T = TypeVar("T")


def _default_audio() -> Any:
    from inference.render.musetalk import AudioWindowOptions

    return AudioWindowOptions()


@dataclass(frozen=True, slots=True, kw_only=True)
class MuseTalkFramesOptions:
    """Device and batching of the offline MuseTalk renderer."""

    device: str = "cuda:0"
    compile: bool = False  # torch.compile pays off only on long scripts
    decode: Literal["full", "mask"] = "full"
    max_batch: int = 64  # upper cap; the free device memory may allow less
    audio: Any = field(default_factory=_default_audio)  # AudioWindowOptions

    def __post_init__(self) -> None:
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if not 1 <= self.max_batch <= 1024:
            raise ValueError("max_batch must be within 1..1024")
        if self.decode not in ("full", "mask"):
            raise ValueError(f"decode must be 'full' or 'mask', got {self.decode!r}")


class MuseTalkFrames:
    """A ``FrameSource`` over one ``MuseTalkEngine`` (``load`` reads the weights folder);
    its renderers share the engine and the worker thread."""

    name = "musetalk"

    def __init__(self, engine: Any, options: MuseTalkFramesOptions | None = None) -> None:
        self.options = options or MuseTalkFramesOptions(device=str(engine.device))
        self.fps = int(self.options.audio.fps)
        self.engine = engine
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="musetalk-offline")
        self._oom_cap: int | None = None
        self._warm = False
        self.batch_sizes: list[int] = []  # every batch run (for logs and benchmarks)

    @classmethod
    def load(
        cls, weights_dir: Path, options: MuseTalkFramesOptions | None = None, *, arch: Any = None
    ) -> MuseTalkFrames:
        """Load the official weights folder onto ``options.device`` (``WeightsError`` names
        what is missing; ``arch`` other than the official one is for tests)."""
        import torch

        from inference.render.musetalk import EngineOptions, MuseTalkEngine, load_musetalk

        options = options or MuseTalkFramesOptions()
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {options.device} requested but CUDA is not available")
        models = load_musetalk(weights_dir, arch=arch)
        engine = MuseTalkEngine(
            models,
            EngineOptions(
                device=options.device,
                compile=options.compile and options.device.startswith("cuda"),
                decode=options.decode,
                max_batch=options.max_batch,
            ),
        )
        return cls(engine, options)

    def renderer(self, avatar: PreparedAvatar, *, height: int) -> Renderer:
        return _ClipRenderer(self, avatar, height)

    async def _render(
        self, avatar: PreparedAvatar, audio_16k: np.ndarray, size: tuple[int, int]
    ) -> AsyncIterator[list[np.ndarray]]:
        """Every frame of ``avatar`` for ``audio_16k`` at ``size`` (width, height), in batches
        of the largest size the device holds."""
        from inference.render.musetalk import FrameJob, frame_count, windows_for_audio

        if audio_16k.ndim != 1 or audio_16k.dtype != np.int16:
            raise ValueError("render() takes 1-D int16 audio at 16 kHz")
        await self._call(self.engine.add_avatar, avatar)
        if not self._warm and self.engine.device.type == "cuda":
            # compiled graphs: every padded batch size once, so no clip meets a recompilation
            seconds = await self._call(self.engine.warmup, (8, 2), all_sizes=self.options.compile)
            self._warm = True
            _log.info("musetalk warm-up %.1f s; batch cap %d", seconds, self._cap())
        n = frame_count(len(audio_16k), self.fps)
        windows = await self._call(
            windows_for_audio, self.engine.audio, audio_16k, self.options.audio
        )
        out_size = None if size == avatar.size else size
        pos = 0
        while pos < n:
            count = min(self._cap(), n - pos)
            jobs = [
                FrameJob(
                    avatar.name,
                    pingpong_index(pos + i, avatar.num_frames),
                    windows[pos + i],
                    out_size,
                )
                for i in range(count)
            ]
            try:
                batch = await self._call(self.engine.run_batch, jobs)
            except Exception as exc:
                if not _is_oom(exc) or count == 1:
                    raise
                self._oom_cap = max(1, count // 2)
                # A static compiled graph pads every batch to the engine's cap: lower that too.
                self.engine.shrink_batch(self._oom_cap)
                _log.warning(
                    "out of GPU memory at batch %d; retrying with %d", count, self._oom_cap
                )
                await self._call(_empty_cache)
                continue
            self.batch_sizes.append(count)
            pos += count
            yield batch

    def describe(self) -> str:
        o = self.options
        return f"musetalk(decode={o.decode}, audio={o.audio!r})"

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _cap(self) -> int:
        cap = min(int(self.engine.max_batch_size()), self.options.max_batch)
        return min(cap, self._oom_cap) if self._oom_cap else cap

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, lambda: fn(*args, **kwargs))


class _ClipRenderer:
    """The ``Renderer`` of one clip: ``avatar`` through its ``MuseTalkFrames``."""

    def __init__(self, source: MuseTalkFrames, avatar: PreparedAvatar, height: int) -> None:
        self._source = source
        self._avatar = avatar
        self.fps = source.fps
        self._size = _out_size(avatar, height)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._size

    def set_output_height(self, height: int) -> None:
        self._size = _out_size(self._avatar, height)

    def idle_frames(self) -> Sequence[np.ndarray]:
        frames = self._avatar.frames
        if self._size == self._avatar.size:
            return list(frames)
        return [cv2.resize(f, self._size, interpolation=cv2.INTER_AREA) for f in frames]

    def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        return self._source._render(self._avatar, audio_16k, self._size)


def _out_size(avatar: PreparedAvatar, height: int) -> tuple[int, int]:
    """(width, height): ``height`` (at most the source's), width by aspect; both even."""
    w, h = avatar.size
    height = min(int(height), h)
    if height == h and w % 2 == 0 and h % 2 == 0:
        return w, h
    return max(2, round(w * height / h / 2) * 2), max(2, round(height / 2) * 2)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
