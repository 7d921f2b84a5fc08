"""Per-avatar precomputation of the warp renderer, shared by every call using that avatar.

``WarpAssets`` is built once per avatar and process (like a loaded model); each call's
``WarpRenderer`` is a cheap view holding only its own timeline and output size. The caches are
small and bounded: the resized photo and its mouth regions per output size, and a photo's idle
loop for the last few sizes. Video frames are resized on demand (≈0.2 ms at 512 px), so a
video avatar costs no extra memory per size.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import overload

import cv2
import numpy as np

from ..avatar.model import PreparedAvatar
from .warp_fields import EYES, CanonicalFields, EyeFrame, MouthFrame, apply_blink, build_fields
from .warp_mouth import MouthRegion, MouthStyle

__all__ = ["BLINK_PROFILE", "WarpAssets", "resize_frame"]

BLINK_PROFILE = (0.45, 0.9, 1.0, 0.7, 0.35, 0.1)  # lid closure per frame of one blink at 25 fps
_KEEP_SIZES = 3


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (w, h): a copy; area filter only below half size."""
    if (image.shape[1], image.shape[0]) == size:
        return image.copy()
    interp = cv2.INTER_AREA if size[0] * 2 <= image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


class _Lru(OrderedDict):  # type: ignore[type-arg]
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class WarpAssets:
    """Fields, regions and idle loops of one avatar; thread-safe, shared across calls."""

    def __init__(self, avatar: PreparedAvatar, *, mouth: MouthStyle | None = None) -> None:
        self.avatar = avatar
        self.mouth = mouth or MouthStyle()
        self.fields: CanonicalFields = build_fields(avatar.landmarks)
        self._lock = threading.Lock()
        self._photo = _Lru(_KEEP_SIZES)  # size → resized photo
        self._regions = _Lru(_KEEP_SIZES)  # size → photo MouthRegion
        self._idle = _Lru(2)  # (size, fps, seconds, breathing) → frames (~63 MB at 512²)

    @property
    def is_video(self) -> bool:
        return self.avatar.num_frames > 1

    def source(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """A fresh, writable copy of source frame ``index`` at ``size``."""
        if self.is_video:
            return resize_frame(self.avatar.frames[index], size)
        with self._lock:
            photo = self._photo.get(size)
        if photo is None:
            photo = resize_frame(self.avatar.frames[0], size)
            with self._lock:
                self._photo.put(size, photo)
        return photo.copy()

    def region(self, index: int, size: tuple[int, int]) -> MouthRegion:
        """The mouth region of source frame ``index`` at ``size`` (cached for a photo)."""
        if self.is_video:
            return self._make_region(index, size)
        with self._lock:
            region = self._regions.get(size)
        if region is None:
            region = self._make_region(0, size)
            with self._lock:
                self._regions.put(size, region)
        return region

    def eyes(self, index: int, size: tuple[int, int]) -> list[EyeFrame]:
        marks = self._scaled_marks(index, size)
        return [EyeFrame.from_landmarks(marks, eye) for eye in EYES]

    def idle(
        self, size: tuple[int, int], *, fps: int, seconds: float, breathing: float
    ) -> Sequence[np.ndarray]:
        """The idle loop at ``size``: a photo breathing and blinking once, or the video itself."""
        if self.is_video:
            return _VideoIdle(self, size, fps)
        key = (size, fps, seconds, breathing)
        with self._lock:
            frames = self._idle.get(key)
        if frames is None:
            frames = tuple(self._photo_idle(size, round(seconds * fps), breathing))
            with self._lock:
                self._idle.put(key, frames)
        return frames

    def _scaled_marks(self, index: int, size: tuple[int, int]) -> np.ndarray:
        src_w, src_h = self.avatar.size
        scale = np.array([size[0] / src_w, size[1] / src_h], np.float64)
        return (self.avatar.landmarks[index].astype(np.float64) + 0.5) * scale - 0.5

    def _make_region(self, index: int, size: tuple[int, int]) -> MouthRegion:
        frame = MouthFrame.from_landmarks(self._scaled_marks(index, size))
        return MouthRegion(self.fields, frame, size, self.mouth)

    def _photo_idle(
        self, size: tuple[int, int], count: int, breathing: float
    ) -> Iterator[np.ndarray]:
        """One breath (the head rises and falls a little) with one blink at 30 % of the loop.

        Played forward then backward, blinks come at alternating ~2 and ~4.5 s intervals.
        """
        base = self.source(0, size)
        eyes = self.eyes(0, size)
        blink_at = round(0.3 * count)
        width, height = size
        for i in range(count):
            image = base.copy()
            k = i - blink_at
            if 0 <= k < len(BLINK_PROFILE):
                for eye in eyes:
                    apply_blink(image, eye, BLINK_PROFILE[k])
            rise = breathing * (1 - math.cos(2 * math.pi * i / count)) / 2
            if rise > 0:  # scale about the bottom centre: shoulders still, head up
                s = 1.0 + rise
                m = np.array([[s, 0, (1 - s) * width / 2], [0, s, (1 - s) * height]], np.float32)
                image = cv2.warpAffine(
                    image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )
            yield image


class _VideoIdle(Sequence[np.ndarray]):
    """A video avatar's frames at ``fps`` and ``size``, resized when read (no copies kept)."""

    def __init__(self, assets: WarpAssets, size: tuple[int, int], fps: int) -> None:
        avatar = assets.avatar
        count = max(1, round(avatar.num_frames * fps / avatar.fps))
        last = avatar.num_frames - 1
        self._indices = [min(int(i * avatar.fps / fps), last) for i in range(count)]
        self._assets = assets
        self._size = size

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | Sequence[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._assets.source(self._indices[index], self._size)
