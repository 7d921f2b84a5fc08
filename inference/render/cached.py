"""A Renderer that replays rendered clips from a :class:`~inference.cache.TieredCache`.

The key covers the audio (SHA-256 of the samples), the avatar (name and source hash), the
renderer and its version/options (``renderer_id``), the output size and the fps. A hit
yields the stored frames in batches; a miss renders through the wrapped renderer and stores
the clip when it finished (never a cancelled, partial one).

Clips are stored compactly: every frame as its difference from the first (only the lower face
and the eyes move while talking), zlib-compressed in segments of ``batch_frames`` frames, so a
3 s, 512 px clip takes a few MB, not 60, and a replay yields its first batch after decoding
one segment.
Blinks of a replayed clip repeat the ones of its first rendering; a video avatar's source
frames would jump, so the factory wraps photo avatars only.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from inference.cache import TieredCache, cache_key
from inference.render.base import Renderer, RendererWrapper
from inference.work import run_blocking

__all__ = ["CachedRenderer", "CachedRendererOptions", "decode_clip", "encode_clip", "iter_clip"]

_HEAD = struct.Struct("<IIIII")  # frames, height, width, channels, frames per segment
_SEG = struct.Struct("<I")  # compressed length of one segment


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedRendererOptions:
    """``avatar_id`` and ``renderer_id`` name what besides the audio changes the frames;
    ``batch_frames``: frames per stored segment (and per replayed batch)."""

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


def encode_clip(frames: Sequence[np.ndarray], level: int = 1, segment: int = 5) -> bytes:
    """Frames (H, W, C) uint8 of one size as bytes: each frame as its difference from the
    first, in zlib segments of ``segment`` frames (so replay can start after one segment)."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    if segment < 1:
        raise ValueError("segment must be >= 1")
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    if stack.ndim != 4:
        raise ValueError(f"frames must be (H, W, C) arrays, got shape {stack.shape[1:]}")
    diff = stack.copy()
    diff[1:] -= stack[0]  # uint8 wrap-around: exact inverse below
    n, h, w, c = stack.shape
    parts = [_HEAD.pack(n, h, w, c, segment)]
    for start in range(0, n, segment):
        packed = zlib.compress(diff[start : start + segment].tobytes(), level)
        parts += [_SEG.pack(len(packed)), packed]
    return b"".join(parts)


def iter_clip(data: bytes) -> Iterator[list[np.ndarray]]:
    """The frames of an :func:`encode_clip` clip, one segment at a time.

    The segment table is checked before anything is yielded (ValueError when it does not
    fit); each segment is decompressed only when it is reached.
    """
    if len(data) < _HEAD.size:
        raise ValueError("cached clip is too short")
    n, h, w, c, segment = _HEAD.unpack_from(data)
    if n == 0 or segment == 0:
        raise ValueError("cached clip is empty")
    spans = []
    pos = _HEAD.size
    for _ in range(0, n, segment):
        if pos + _SEG.size > len(data):
            raise ValueError("cached clip is truncated")
        (length,) = _SEG.unpack_from(data, pos)
        pos += _SEG.size
        spans.append((pos, pos + length))
        pos += length
    if pos != len(data):
        raise ValueError("cached clip has the wrong size")
    return _segments(data, spans, n, (h, w, c), segment)


def _segments(
    data: bytes, spans: list[tuple[int, int]], n: int, shape: tuple[int, int, int], segment: int
) -> Iterator[list[np.ndarray]]:
    first: np.ndarray | None = None
    for k, (a, b) in enumerate(spans):
        count = min(segment, n - k * segment)
        try:
            raw = zlib.decompress(data[a:b])
        except zlib.error as exc:
            raise ValueError(f"cached clip does not decompress: {exc}") from exc
        if len(raw) != count * shape[0] * shape[1] * shape[2]:
            raise ValueError("cached clip segment has the wrong size")
        frames = np.frombuffer(raw, dtype=np.uint8).reshape(count, *shape).copy()
        if first is None:
            first = frames[0].copy()
            frames[1:] += first
        else:
            frames += first
        yield list(frames)


def decode_clip(data: bytes) -> list[np.ndarray]:
    """Every frame of an :func:`encode_clip` clip (ValueError for bytes that do not decode)."""
    return [frame for part in iter_clip(data) for frame in part]


class CachedRenderer(RendererWrapper):
    """Wraps one call's renderer; everything but ``render`` goes straight to it."""

    def __init__(self, inner: Renderer, cache: TieredCache, options: CachedRendererOptions) -> None:
        super().__init__(inner)
        self.cache = cache
        self.options = options

    def key(self, audio_16k: np.ndarray) -> str:
        audio_hash = hashlib.sha256(np.ascontiguousarray(audio_16k, dtype="<i2").tobytes())
        w, h = self.inner.frame_size
        return cache_key(
            "clip",
            self.options.avatar_id,
            self.options.renderer_id,
            f"{w}x{h}",
            self.inner.fps,
            self._render_fps(),  # fewer drawn at low rungs
            audio_hash.hexdigest(),
        )

    def _render_fps(self) -> int:
        follower = self.rate_follower()
        return self.inner.fps if follower is None else follower.render_fps

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        key = self.key(audio_16k)
        data = await self.cache.aget(key, kind="clip")
        if data is not None:
            try:
                parts = iter_clip(data)
                first = await run_blocking(next, parts)
            except (ValueError, struct.error):
                first = []
            if first:
                yield first
                while (part := await run_blocking(next, parts, None)) is not None:
                    yield part
                return
        size = self.inner.frame_size
        collected: list[np.ndarray] = []
        async for batch in self.inner.render(audio_16k):
            collected.extend(batch)
            yield batch
        # The size may change mid-clip and back (the quality ladder): store one size only.
        if collected and self.inner.frame_size == size and len({f.shape for f in collected}) == 1:
            opts = self.options
            await run_blocking(
                lambda: self.cache.put(
                    key, encode_clip(collected, opts.compress_level, opts.batch_frames)
                )
            )
