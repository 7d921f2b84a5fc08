"""Preparation: from decoded frames to a ``PreparedAvatar`` (landmarks, crops, masks, boxes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import geometry
from .errors import FaceTooSmall, NoFaceFound
from .landmarks import FaceAnalyzer
from .media_io import InputMedia
from .model import PreparedAvatar

__all__ = ["PREP_VERSION", "PrepareOptions", "prepare_media"]

PREP_VERSION = 1  # bump when the preparation's output changes for the same input
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareOptions:
    """How inputs are prepared. Part of the cache key: other options mean another preparation
    (except ``max_input_pixels``, which only refuses inputs and never changes an output)."""

    min_face_px: int = 64  # a face box smaller than this (long side, source px) is refused
    warn_face_px: int = 96  # smaller than this is accepted with a warning
    max_long_side: int = 960  # frames are downscaled to this long side before anything else
    max_video_seconds: float = 30.0  # longer videos are cut (with a warning)
    max_missing_fraction: float = 0.5  # video frames allowed without a face (filled in)
    refine_landmarks: bool = False  # FaceMesh iris refinement (slower; landmarks stay 468)
    box_smoothing: float = 2.5  # temporal sigma (frames) for video crop boxes
    max_input_pixels: int = 50_000_000  # larger photos / video frames are refused undecoded

    def __post_init__(self) -> None:
        if not 16 <= self.min_face_px <= self.warn_face_px:
            raise ValueError("need 16 <= min_face_px <= warn_face_px")
        if not 128 <= self.max_long_side <= 4096:
            raise ValueError("max_long_side must be within 128..4096")
        if not 0.0 < self.max_video_seconds <= 600.0:
            raise ValueError("max_video_seconds must be within (0, 600]")
        if not 0.0 <= self.max_missing_fraction < 1.0:
            raise ValueError("max_missing_fraction must be within [0, 1)")
        if self.box_smoothing < 0:
            raise ValueError("box_smoothing must be >= 0")
        if self.max_input_pixels < 16 * 16:
            raise ValueError("max_input_pixels must be >= 256")

    def cache_key(self) -> str:
        """A string naming the version and every option that changes the output."""
        return (
            f"v{PREP_VERSION}:min{self.min_face_px}:long{self.max_long_side}:"
            f"sec{self.max_video_seconds:g}:miss{self.max_missing_fraction:g}:"
            f"refine{int(self.refine_landmarks)}:smooth{self.box_smoothing:g}"
        )


def prepare_media(
    media: InputMedia,
    *,
    name: str,
    source_hash: str,
    analyzer: FaceAnalyzer,
    options: PrepareOptions,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedAvatar:
    """Find the face in every frame and derive what the renderers need.

    Raises ``NoFaceFound`` (no face, or too many video frames without one) and ``FaceTooSmall``.
    """
    frames = media.frames
    n = len(frames)
    height, width = frames.shape[1:3]
    warnings = list(media.warnings)
    landmarks: list[np.ndarray | None] = []
    sizes: list[float] = []
    most_faces = 0
    previous: np.ndarray | None = None
    for i, frame in enumerate(frames):
        obs = analyzer.analyze(frame, previous)
        most_faces = max(most_faces, len(obs.boxes))
        landmarks.append(obs.landmarks)
        if obs.face_box is not None and obs.landmarks is not None:
            previous = obs.face_box
            box = obs.face_box
            sizes.append(float(max(box[2] - box[0], box[3] - box[1])))
        if progress is not None:
            progress(i + 1, n)
    what = "the photo" if media.kind == "photo" else "any frame of the video"
    found = [i for i, m in enumerate(landmarks) if m is not None]
    if not found:
        raise NoFaceFound(f"no face found in {what} for avatar {name!r}")
    missing = n - len(found)
    if missing / n > options.max_missing_fraction:
        raise NoFaceFound(
            f"a face was found in only {len(found)} of {n} frames for avatar {name!r} "
            f"(at most {options.max_missing_fraction:.0%} may lack one)"
        )
    if missing:
        warnings.append(f"{missing} of {n} frames have no face; their landmarks are interpolated")
    face_px = float(np.median(sizes))
    if face_px < options.min_face_px:
        raise FaceTooSmall(
            f"the face in avatar {name!r} is {face_px:.0f} px, under the {options.min_face_px} px "
            "needed to animate it: use a closer or larger photo or video"
        )
    if face_px < options.warn_face_px:
        warnings.append(f"small face ({face_px:.0f} px): the animation will look coarse")
    if most_faces > 1:
        warnings.append(f"{most_faces} faces found; the largest one is animated")
    marks = _fill_missing(landmarks, found)
    if n > 1:
        marks = geometry.smooth_landmarks(marks)
    raw_boxes = np.stack([geometry.crop_box(m, (width, height)) for m in marks])
    sigma = options.box_smoothing if n > 1 else 0.0
    crop_boxes = geometry.smooth_boxes(raw_boxes, (width, height), sigma=sigma)
    masks = np.stack(
        [geometry.lower_face_mask(m, b) for m, b in zip(marks, crop_boxes, strict=True)]
    )
    mouth_boxes = np.stack([geometry.mouth_box(m) for m in marks])
    for text in warnings:
        _log.warning("avatar %s: %s", name, text)
    return PreparedAvatar(
        name=name,
        frames=frames,
        fps=float(media.fps),
        crop_boxes=crop_boxes.astype(np.int32),
        landmarks=marks.astype(np.float32),
        masks=masks.astype(np.float32),
        mouth_boxes=mouth_boxes.astype(np.float32),
        kind=media.kind,
        source_hash=source_hash,
        warnings=tuple(warnings),
    )


def _fill_missing(landmarks: list[np.ndarray | None], found: list[int]) -> np.ndarray:
    """Linear interpolation over time of the frames without landmarks (edges hold)."""
    known = np.stack([m for m in landmarks if m is not None]).astype(np.float64)
    if len(found) == len(landmarks):
        return known.astype(np.float32)
    index = np.arange(len(landmarks))
    flat = known.reshape(len(found), -1)
    filled = np.empty((len(landmarks), flat.shape[1]), np.float64)
    for col in range(flat.shape[1]):
        filled[:, col] = np.interp(index, found, flat[:, col])
    return filled.reshape(len(landmarks), *known.shape[1:]).astype(np.float32)
