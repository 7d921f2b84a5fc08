"""The prepared avatar: what preparation writes once and every renderer reads.

Coordinates are pixels of the source frames. Fields may be added (with defaults);
existing ones keep their meaning because ``warp`` and ``musetalk`` both rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PreparedAvatar"]


@dataclass(frozen=True, slots=True)
class PreparedAvatar:
    name: str
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB source frames; a photo has N == 1
    fps: float  # source frame rate (25.0 for a photo)
    crop_boxes: np.ndarray  # (N, 4) int32 x0, y0, x1, y1: MuseTalk-style square face crop
    landmarks: np.ndarray  # (N, 468, 2) float32 FaceMesh landmarks in source pixels
    masks: np.ndarray  # (N, 256, 256) float32 in [0, 1]: feathered lower-face mask, crop coords
    mouth_boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 around the lips, source pixels
    # Added with defaults (preparation format 1):
    kind: str = "photo"  # "photo" or "video"
    source_hash: str = ""  # sha256 of the input file (or of the pixels for an in-memory image)
    warnings: tuple[str, ...] = ()  # e.g. several faces found, small face, frames without a face

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the source frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def is_video(self) -> bool:
        """True when the avatar has several source frames (played ping-pong)."""
        return self.num_frames > 1

    def mouth_box(self, margin: float = 0.35) -> tuple[float, float, float, float]:
        """Normalized (0..1) x0, y0, x1, y1 around the lips over all source frames, widened
        by ``margin`` of its size on each side: where a client finds the lips in the output
        frame (the output keeps the source's aspect)."""
        boxes = np.asarray(self.mouth_boxes, dtype=np.float64)
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        w, h = self.size
        return (
            max(0.0, float((x0 - mx) / w)),
            max(0.0, float((y0 - my) / h)),
            min(1.0, float((x1 + mx) / w)),
            min(1.0, float((y1 + my) / h)),
        )
