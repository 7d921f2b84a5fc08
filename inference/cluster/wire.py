"""What crosses the network between a media node and a render replica, and how a patch is cut
and put back.

Per frame only the **patch** crosses: the rectangle of the source frame that the blend can
change (the crop box's part under the avatar's mask), JPEG-encoded by default. The media node
holds the same prepared avatar and pastes each patch into the source frame it names, so full
frames never travel. A request carries one piece of reply audio (16 kHz int16) and a reference
to the avatar in the cluster's object store, never the avatar itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from inference.avatar.model import PreparedAvatar

__all__ = [
    "APP_NAME",
    "LEDGER",
    "REPLICA",
    "Encoding",
    "Patch",
    "RenderRequest",
    "ReplicaReport",
    "cluster_avatar_name",
    "cycle_index",
    "decode_patch",
    "encode_patch",
    "paste",
    "patch_boxes",
]

APP_NAME = "avatar-render"  # the Serve application media nodes look for
REPLICA = "RenderReplica"  # its deployments
LEDGER = "RenderLedger"

Encoding = Literal["jpeg", "raw"]
_CROP = 256  # MuseTalk's face crop side
_MARGIN = 2  # pixels around the mask's rectangle: the bilinear warp reaches one beyond it


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderRequest:
    """One piece of reply audio of one call. Its first frame is due on screen the replica's
    ``start_latency_s`` after the request arrives (or when the call's previous piece ends).
    ``avatar_ref`` is an object-store reference (``ray.ObjectRef``) to the prepared avatar,
    resolved only by a replica that does not hold the avatar yet (a new call, or a call
    moved after a failure).
    """

    call: str
    avatar: str  # cluster name: see cluster_avatar_name
    avatar_ref: Any
    audio: np.ndarray  # (n,) int16 at 16 kHz
    render_fps: int = 25
    encoding: Encoding = "jpeg"
    quality: int = 90

    def __post_init__(self) -> None:
        if self.audio.ndim != 1 or self.audio.dtype != np.int16:
            raise ValueError("audio must be 1-D int16 at 16 kHz")
        if self.render_fps <= 0 or not 1 <= self.quality <= 100:
            raise ValueError("render_fps must be > 0 and quality in 1..100")


@dataclass(frozen=True, slots=True)
class Patch:
    """One rendered frame as it crosses the network: frame number within its piece, the
    source frame it belongs to, where the patch goes (x, y) and its encoded pixels."""

    frame: int
    source: int
    x: int
    y: int
    shape: tuple[int, int]  # (height, width)
    data: bytes
    encoding: Encoding

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReport:
    """A replica's frame budget: what it can still take within deadlines.

    ``capacity_fps``: frames/s it renders (measured from its batches, or fixed by its
    options); ``committed_fps``: what its calls are expected to ask for (each call at least
    its talk share); ``headroom_fps`` = ``budget x capacity - committed``."""

    replica: str
    calls: int
    capacity_fps: float
    committed_fps: float
    headroom_fps: float
    demand_fps: float  # what the calls ask for right now
    healthy: bool = True


def cluster_avatar_name(avatar: PreparedAvatar) -> str:
    """The avatar's name on the replicas: two media nodes may hold different avatars of
    one name, so the content hash is part of it."""
    return f"{avatar.name}@{avatar.source_hash[:16] or 'nohash'}"


def cycle_index(frame_no: int, num_frames: int) -> int:
    """Source frame of output frame ``frame_no``: the source frames played ping-pong
    (as the MuseTalk renderer and the idle loop play them)."""
    if num_frames <= 1:
        return 0
    period = 2 * num_frames - 2
    t = frame_no % period
    return t if t < num_frames else period - t


def patch_boxes(avatar: PreparedAvatar, *, mask_eps: float = 1e-3) -> np.ndarray:
    """(N, 4) int x0, y0, x1, y1 per source frame: the pixels the blend may change (the
    rectangle of the mask's support mapped through the frame's crop box, plus a margin)."""
    w, h = avatar.size
    out = np.zeros((avatar.num_frames, 4), dtype=np.int64)
    for i in range(avatar.num_frames):
        support = avatar.masks[i] > mask_eps
        rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
        bx0, by0, bx1, by1 = (float(v) for v in avatar.crop_boxes[i])
        if len(rows) == 0:
            out[i] = (0, 0, 0, 0)
            continue
        sx, sy = (bx1 - bx0) / _CROP, (by1 - by0) / _CROP
        x0 = int(np.floor(bx0 + cols[0] * sx)) - _MARGIN
        x1 = int(np.ceil(bx0 + (cols[-1] + 1) * sx)) + _MARGIN
        y0 = int(np.floor(by0 + rows[0] * sy)) - _MARGIN
        y1 = int(np.ceil(by0 + (rows[-1] + 1) * sy)) + _MARGIN
        out[i] = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
    return out


def encode_patch(
    frame: np.ndarray,
    box: np.ndarray,
    *,
    frame_no: int,
    source: int,
    encoding: Encoding = "jpeg",
    quality: int = 90,
) -> Patch:
    """Cut ``box`` out of a rendered (h, w, 3) RGB frame and encode it."""
    x0, y0, x1, y1 = (int(v) for v in box)
    region = np.ascontiguousarray(frame[y0:y1, x0:x1])
    shape = (int(region.shape[0]), int(region.shape[1]))
    if encoding == "raw" or region.size == 0:
        return Patch(frame_no, source, x0, y0, shape, region.tobytes(), "raw")
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(region, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding of a patch failed")
    return Patch(frame_no, source, x0, y0, shape, buf.tobytes(), "jpeg")


def decode_patch(patch: Patch) -> np.ndarray:
    """The patch's (h, w, 3) uint8 RGB pixels."""
    h, w = patch.shape
    if patch.encoding == "raw":
        return np.frombuffer(patch.data, dtype=np.uint8).reshape(h, w, 3)
    img = cv2.imdecode(np.frombuffer(patch.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.shape[:2] != (h, w):
        raise ValueError(f"patch of frame {patch.frame} does not decode to {w}x{h}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def paste(source: np.ndarray, patch: Patch) -> np.ndarray:
    """A copy of ``source`` (the avatar's frame ``patch.source``) with the patch in place."""
    out = source.copy()
    h, w = patch.shape
    if h and w:
        out[patch.y : patch.y + h, patch.x : patch.x + w] = decode_patch(patch)
    return out
