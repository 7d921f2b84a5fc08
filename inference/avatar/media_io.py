"""Reading the input of preparation: a face photo (JPEG/PNG/WebP) or a short video (MP4/WebM/MOV).

Frames come back as RGB uint8 ``(N, H, W, 3)``, downscaled so that the long side is at most
``max_long_side`` (even width and height), with the source frame rate (25.0 for a photo).
An input larger than ``max_pixels`` is refused from its header (a photo's PNG/JPEG/WebP header,
a video stream's declared size) before anything is decoded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputNotFound, InputTooLarge, UnsupportedInput
from .image_header import image_size

__all__ = [
    "PHOTO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "InputMedia",
    "check_pixels",
    "file_sha256",
    "fit_long_side",
    "read_input",
    "resize_long_side",
]

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".m4v", ".mkv"})


@dataclass(frozen=True, slots=True)
class InputMedia:
    """Decoded input frames and what was noticed while reading them."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float
    kind: str  # "photo" or "video"
    warnings: tuple[str, ...] = ()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fit_long_side(width: int, height: int, max_long_side: int) -> tuple[int, int]:
    """(w, h) scaled down (never up) so the long side is at most ``max_long_side``; both even."""
    scale = min(1.0, max_long_side / max(width, height))
    w = max(2, round(width * scale / 2) * 2)
    h = max(2, round(height * scale / 2) * 2)
    return w, h


def check_pixels(filename: str, width: int, height: int, max_pixels: int) -> None:
    """``InputTooLarge`` naming the size and the cap when ``width * height > max_pixels``."""
    if width * height > max_pixels:
        raise InputTooLarge(
            f"{filename!r} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
            f"over the cap of {max_pixels} pixels ({max_pixels / 1e6:g} megapixels): "
            "scale it down first"
        )


def read_input(
    path: Path,
    *,
    max_long_side: int,
    max_video_seconds: float,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> InputMedia:
    """Decode ``path`` as a photo or video according to its suffix.

    Raises ``InputNotFound`` when it does not exist, ``InputTooLarge`` when its header declares
    more than ``max_pixels`` pixels a frame, and ``UnsupportedInput`` when its suffix is unknown
    or it cannot be decoded.
    """
    if not path.is_file():
        raise InputNotFound(f"avatar input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return _read_photo(path, max_long_side, max_pixels)
    if suffix in VIDEO_SUFFIXES:
        return _read_video(path, max_long_side, max_video_seconds, max_pixels, progress)
    known = ", ".join(sorted(PHOTO_SUFFIXES | VIDEO_SUFFIXES))
    raise UnsupportedInput(f"unsupported avatar input {path.name!r}: expected one of {known}")


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:  # drop alpha over white, as a viewer would show it
        rgb = image[:, :, :3].astype(np.float32)
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        return (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return image[:, :, :3]


def resize_long_side(image: np.ndarray, max_long_side: int) -> np.ndarray:
    """``image`` downscaled (never up) to ``max_long_side`` with even sides."""
    h, w = image.shape[:2]
    tw, th = fit_long_side(w, h, max_long_side)
    if (tw, th) == (w, h):
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR
    return cv2.resize(image, (tw, th), interpolation=interp)


def _read_photo(path: Path, max_long_side: int, max_pixels: int) -> InputMedia:
    data = path.read_bytes()
    size = image_size(data)
    if size is None:
        raise UnsupportedInput(
            f"cannot decode image {path.name!r}: not a JPEG, PNG or WebP image, or its header "
            "is damaged"
        )
    check_pixels(path.name, *size, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise UnsupportedInput(f"cannot decode image {path.name!r}: {exc}") from exc
    if image is None:
        raise UnsupportedInput(f"cannot decode image {path.name!r}: corrupt or not an image")
    if image.dtype != np.uint8:  # 16-bit PNG
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        )
    rgb = _to_rgb(image)
    if min(rgb.shape[:2]) < 16:
        raise UnsupportedInput(f"image {path.name!r} is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return InputMedia(frames=resize_long_side(rgb, max_long_side)[None], fps=25.0, kind="photo")


def _read_video(
    path: Path,
    max_long_side: int,
    max_video_seconds: float,
    max_pixels: int,
    progress: Callable[[int, int], None] | None,
) -> InputMedia:
    import av  # imported here: only videos need it

    warnings: list[str] = []
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnsupportedInput(f"{path.name!r} has no video stream")
            stream = container.streams.video[0]
            check_pixels(
                path.name, stream.codec_context.width, stream.codec_context.height, max_pixels
            )
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 25.0
            if not 1.0 <= fps <= 120.0:
                fps = 25.0
            max_frames = max(1, int(max_video_seconds * fps))
            total = int(stream.frames) if stream.frames else max_frames
            total = min(total, max_frames)
            size: tuple[int, int] | None = None
            for frame in container.decode(stream):
                if len(frames) >= max_frames:
                    warnings.append(
                        f"video longer than {max_video_seconds:g} s: only the first "
                        f"{max_frames} frames are used"
                    )
                    break
                check_pixels(path.name, frame.width, frame.height, max_pixels)
                if size is None:
                    size = fit_long_side(frame.width, frame.height, max_long_side)
                image: np.ndarray = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                turns = round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4
                if turns:
                    image = np.ascontiguousarray(np.rot90(image, turns))
                frames.append(image)
                if progress is not None:
                    progress(len(frames), max(total, len(frames)))
    except UnsupportedInput:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise UnsupportedInput(f"cannot decode video {path.name!r}: {exc}") from exc
    if not frames:
        raise UnsupportedInput(f"video {path.name!r} has no decodable frames")
    if len({f.shape for f in frames}) != 1:
        raise UnsupportedInput(f"video {path.name!r} changes frame size midway")
    return InputMedia(frames=np.stack(frames), fps=fps, kind="video", warnings=tuple(warnings))
