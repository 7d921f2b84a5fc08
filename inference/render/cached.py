"""A Renderer that replays rendered clips from a :class:`~inference.cache.TieredCache`.

The key covers the audio (SHA-256 of the samples), the avatar (name and source hash), the
renderer and its version/options (``renderer_id``), the output size and the fps. A hit
yields the stored frames in batches; a miss renders through the wrapped renderer and stores
the clip when it finished (never a cancelled, partial one).

Clips are stored compactly: every frame as its difference from the first (only the lower face
and the eyes move while talking), then zlib, so a 3 s, 512 px clip takes a few MB, not 60.
Blinks of a replayed clip repeat the ones of its first rendering; a video avatar's source
frames would jump, so the factory wraps photo avatars only.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.cache import TieredCache, cache_key
from inference.render.base import Renderer

__all__ = ["CachedRenderer", "CachedRendererOptions", "decode_clip", "encode_clip"]

_HEAD = struct.Struct("<IIII")  # frames, height, width, channels


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedRendererOptions:
    """``avatar_id`` and ``renderer_id`` name what besides the audio changes the frames."""

    avatar_id: str
    renderer_id: str
    batch_frames: int = 5
    compress_level: int = 1

    def __post_init__(self) -> None:
        if not self.avatar_id or not self.renderer_id:
            raise ValueError("avatar_id and renderer_id must not be empty")
        if not 1 <= self.batch_frames <= 100:
            raise ValueError(f"batch_frames must be within 1..100, got {self.batch_frames}")
        if not 0 <= self.compress_level <= 9:
            raise ValueError(f"compress_level must be within 0..9, got {self.compress_level}")


def encode_clip(frames: Sequence[np.ndarray], level: int = 1) -> bytes:
    """Frames (H, W, C) uint8 of one size as bytes: first frame, then differences, zlib."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    if stack.ndim != 4:
        raise ValueError(f"frames must be (H, W, C) arrays, got shape {stack.shape[1:]}")
    diff = stack.copy()
    diff[1:] -= stack[0]  # uint8 wrap-around: exact inverse below
    n, h, w, c = stack.shape
    return _HEAD.pack(n, h, w, c) + zlib.compress(diff.tobytes(), level)


def decode_clip(data: bytes) -> list[np.ndarray]:
    """The inverse of :func:`encode_clip` (ValueError for bytes that do not decode)."""
    n, h, w, c = _HEAD.unpack_from(data)
    try:
        raw = zlib.decompress(data[_HEAD.size :])
    except zlib.error as exc:
        raise ValueError(f"cached clip does not decompress: {exc}") from exc
    if len(raw) != n * h * w * c or n == 0:
        raise ValueError("cached clip has the wrong size")
    stack = np.frombuffer(raw, dtype=np.uint8).reshape(n, h, w, c).copy()
    stack[1:] += stack[0]
    return list(stack)


class CachedRenderer:
    """Wraps one call's renderer; everything but ``render`` goes straight to it."""

    def __init__(self, inner: Renderer, cache: TieredCache, options: CachedRendererOptions) -> None:
        self.inner = inner
        self.cache = cache
        self.options = options
        self.fps = inner.fps

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.inner.frame_size

    def set_output_height(self, height: int) -> None:
        self.inner.set_output_height(height)

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self.inner.idle_frames()

    def __getattr__(self, name: str) -> Any:
        # Extras of the wrapped renderer (seek, blend_support, ...) stay reachable.
        return getattr(self.inner, name)

    def key(self, audio_16k: np.ndarray) -> str:
        audio_hash = hashlib.sha256(np.ascontiguousarray(audio_16k, dtype="<i2").tobytes())
        w, h = self.inner.frame_size
        return cache_key(
            "clip",
            self.options.avatar_id,
            self.options.renderer_id,
            f"{w}x{h}",
            self.inner.fps,
            audio_hash.hexdigest(),
        )

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        key = self.key(audio_16k)
        data = await self.cache.aget(key, kind="clip")
        frames: list[np.ndarray] = []
        if data is not None:
            try:
                frames = await asyncio.to_thread(decode_clip, data)
            except (ValueError, struct.error):
                frames = []
        if frames:
            step = self.options.batch_frames
            for start in range(0, len(frames), step):
                yield frames[start : start + step]
            return
        size = self.inner.frame_size
        collected: list[np.ndarray] = []
        async for batch in self.inner.render(audio_16k):
            collected.extend(batch)
            yield batch
        if collected and self.inner.frame_size == size:
            level = self.options.compress_level
            await asyncio.to_thread(lambda: self.cache.put(key, encode_clip(collected, level)))
