"""Checks of a prepared avatar folder's meta.json and arrays as read from disk.

Every field and array is checked against format 1 (see ``store``), so a damaged or
hand-edited folder is a ``CorruptAvatar`` naming the problem, never a crash in a renderer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import CorruptAvatar

__all__ = ["ARRAY_NAMES", "check_arrays", "check_meta"]

ARRAY_NAMES = ("crop_boxes", "landmarks", "masks", "mouth_boxes")
_LANDMARKS = 468


def check_meta(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` if every field a reader uses has its format-1 type, else ``CorruptAvatar``."""
    bad = _bad_field(meta)
    if bad is not None:
        raise CorruptAvatar(f"avatar {name!r}: meta.json field {bad}")
    return meta


def _bad_field(meta: dict[str, Any]) -> str | None:
    if meta.get("kind") not in ("photo", "video"):
        return '"kind" must be "photo" or "video"'
    if meta.get("frames") not in ("png", "jpeg"):
        return '"frames" must be "png" or "jpeg"'
    for key in ("num_frames", "mask_size"):
        if not _positive_int(meta.get(key)):
            return f'"{key}" must be a positive integer'
    size = meta.get("frame_size")
    if not (isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))):
        return '"frame_size" must be [width, height] in positive integers'
    fps = meta.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < math.inf:
        return '"fps" must be a positive number'
    source = meta.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("sha256"), str):
        return '"source" must be an object with a "sha256" string'
    warnings = meta.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return '"warnings" must be a list of strings'
    return None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_arrays(name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """``CorruptAvatar`` unless the arrays have the shapes of ``meta`` (n frames of
    ``frame_size``), finite values, and crop boxes inside the frame."""
    n, m = int(meta["num_frames"]), int(meta["mask_size"])
    width, height = (int(v) for v in meta["frame_size"])
    shapes = {
        "crop_boxes": (n, 4),
        "landmarks": (n, _LANDMARKS, 2),
        "masks": (n, m, m),
        "mouth_boxes": (n, 4),
    }
    for key, shape in shapes.items():
        if arrays[key].dtype.kind not in "iuf":
            raise CorruptAvatar(f"avatar {name!r}: array {key} is not numeric")
        if arrays[key].shape != shape:
            raise CorruptAvatar(
                f"avatar {name!r}: array {key} has shape {arrays[key].shape}, expected {shape}"
            )
        if not np.isfinite(arrays[key]).all():
            raise CorruptAvatar(f"avatar {name!r}: array {key} holds non-finite values")
    boxes = arrays["crop_boxes"]
    inside = (
        (boxes[:, 0] >= 0)
        & (boxes[:, 1] >= 0)
        & (boxes[:, 0] < boxes[:, 2])
        & (boxes[:, 1] < boxes[:, 3])
        & (boxes[:, 2] <= width)
        & (boxes[:, 3] <= height)
    )
    if not inside.all():
        raise CorruptAvatar(f"avatar {name!r}: a crop box lies outside the {width}x{height} frame")
