"""Per-frame mouth warp: open the lips, move the jaw and chin, colour the inner mouth.

``MouthRegion`` holds what does not change from frame to frame for one source frame at one
output size (the region of interest, its pixel grid and the displacement fields sampled on it);
``MouthRegion.apply`` then warps a frame in place for given openness and width.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .warp_fields import CanonicalFields, MouthFrame, smoothstep

__all__ = ["MouthRegion", "MouthStyle"]

_INNER = np.array([88.0, 34.0, 40.0], np.float32)  # the inside of a mouth in shadow, RGB
_TONGUE = np.array([150.0, 72.0, 78.0], np.float32)
_TEETH = np.array([200.0, 190.0, 180.0], np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class MouthStyle:
    """How far the mouth moves at full openness / width."""

    max_open: float = 0.32  # lip gap at openness 1, as a fraction of the mouth width
    upper_share: float = 0.28  # part of the gap the upper lip makes (the jaw makes the rest)
    max_width: float = 0.14  # corner travel at |width| 1, as a fraction of half the mouth width

    def __post_init__(self) -> None:
        if not 0.0 < self.max_open <= 1.0:
            raise ValueError("max_open must be within (0, 1]")
        if not 0.0 <= self.upper_share <= 0.5:
            raise ValueError("upper_share must be within [0, 0.5]")
        if not 0.0 <= self.max_width <= 0.5:
            raise ValueError("max_width must be within [0, 0.5]")


class MouthRegion:
    """The lower-face region of one source frame at one output size, ready to warp."""

    def __init__(
        self, fields: CanonicalFields, frame: MouthFrame, size: tuple[int, int], style: MouthStyle
    ) -> None:
        width, height = size
        to_px = frame.canonical_to_pixel()
        corners = fields.corners() @ to_px[:, :2].T + to_px[:, 2]
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        self.box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height))
        bx0, by0, bx1, by1 = self.box
        self.empty = bx1 - bx0 < 4 or by1 - by0 < 4
        self.frame = frame
        self.style = style
        rw, rh = max(bx1 - bx0, 1), max(by1 - by0, 1)
        # ROI pixel → canonical → texel, as one affine (warpAffine's inverse map).
        px_to_canon = np.linalg.inv(np.vstack([to_px, [0, 0, 1]]))
        roi_to_px = np.array([[1, 0, bx0], [0, 1, by0], [0, 0, 1]], np.float64)
        m = (fields.texel_affine() @ px_to_canon @ roi_to_px)[:2].astype(np.float32)
        tex = cv2.warpAffine(
            fields.texture,
            m,
            (rw, rh),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0.0, 0.0, 0.0, 0.0),
        )
        self.low = np.ascontiguousarray(tex[:, :, 0])
        self.up = np.ascontiguousarray(tex[:, :, 1])
        self.side = np.ascontiguousarray(tex[:, :, 2])
        self.lens = np.ascontiguousarray(tex[:, :, 3])
        xs = np.arange(bx0, bx0 + rw, dtype=np.float32)[None, :]
        ys = np.arange(by0, by0 + rh, dtype=np.float32)[:, None]
        self.grid_x = np.ascontiguousarray(np.broadcast_to(xs, (rh, rw)))
        self.grid_y = np.ascontiguousarray(np.broadcast_to(ys, (rh, rw)))
        cx, cy = frame.centre.astype(np.float32)
        ey = frame.ey.astype(np.float32)
        # Signed distance (px along ey) from the lip line, which curves like the inner lips.
        ex = frame.ex.astype(np.float32)
        u = np.clip(
            ((xs - cx) * ex[0] + (ys - cy) * ex[1]) / np.float32(frame.half_width), -1.3, 1.3
        )
        line = (frame.tilt * u - frame.bend * u * u) * np.float32(frame.chin)
        self.v = ((xs - cx) * ey[0] + (ys - cy) * ey[1] - line).astype(np.float32)
        self.upper = self.v < 0
        self.teeth_span = smoothstep(0.55, 0.85, self.lens).astype(np.float32)

    def support(self) -> np.ndarray:
        """(h, w) float32 in [0, 1]: where the warp can move pixels (for seam checks)."""
        return np.clip(np.maximum(np.maximum(self.low, self.up), np.abs(self.side)), 0.0, 1.0)

    def apply(self, image: np.ndarray, openness: float, width: float) -> None:
        """Warp ``image`` (H, W, 3 uint8, the output size) in place."""
        if self.empty or (openness <= 1e-3 and abs(width) <= 1e-3):
            return
        st, fr = self.style, self.frame
        gap = float(np.clip(openness, 0, 1)) * st.max_open * 2.0 * fr.half_width
        a_up, a_low = gap * st.upper_share, gap * (1.0 - st.upper_share)
        corner = float(np.clip(width, -1, 1)) * st.max_width * fr.half_width
        v = self.v
        # Backward map along ey: the upper part samples from below (the lip moved up), the lower
        # part from above (the jaw moved down); the gap between the lips samples the lip line.
        target = np.where(self.upper, v + a_up * self.up, v - a_low * self.low)
        v_src = np.where(self.upper, np.minimum(target, 0.0), np.maximum(target, 0.0))
        dv = v_src - v
        du = self.side * np.float32(-corner)
        ex, ey = fr.ex.astype(np.float32), fr.ey.astype(np.float32)
        map_x = self.grid_x + du * ex[0] + dv * ey[0]
        map_y = self.grid_y + du * ex[1] + dv * ey[1]
        x0, y0, x1, y1 = self.box
        patch = cv2.remap(
            image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        if gap > 0.5:
            # Inside the gap: how far below the upper lip and above the lower lip each pixel is.
            from_top = v + a_up * self.up
            to_bottom = a_low * self.low - v
            patch = self._inner_mouth(patch, from_top, to_bottom, float(openness))
        image[y0:y1, x0:x1] = patch

    def _inner_mouth(
        self, patch: np.ndarray, from_top: np.ndarray, to_bottom: np.ndarray, openness: float
    ) -> np.ndarray:
        inside = np.minimum(from_top, to_bottom)
        rows = np.flatnonzero(inside.max(axis=1) > 0)
        if len(rows) == 0:
            return patch
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        alpha = np.clip(inside[r0:r1] / 1.5, 0.0, 1.0)  # soft edge along the lips
        top, bottom = from_top[r0:r1], to_bottom[r0:r1]
        depth = np.clip(top / np.maximum(top + bottom, 1e-3), 0.0, 1.0)
        # Upper teeth just under the upper lip (in the middle of the mouth), the tongue low
        # down, a shadowed inside between.
        span = self.teeth_span[r0:r1]
        teeth = (1.0 - smoothstep(0.15, 0.35, depth)) * span * min(1.0, 2.5 * openness) * 0.8
        tongue = smoothstep(0.6, 0.95, depth) * span * min(1.0, 1.5 * openness) * 0.45
        shade = (1.0 - 0.45 * np.sin(np.pi * depth))[:, :, None]
        colour = _INNER * shade
        colour = colour + (_TONGUE - colour) * tongue[:, :, None]
        colour = colour + (_TEETH - colour) * teeth[:, :, None]
        # The inside darkens as the mouth opens (more of the shadowed cavity shows).
        cover = (alpha * (0.6 + 0.4 * min(1.0, openness * 1.4)))[:, :, None]
        band = patch[r0:r1].astype(np.float32)
        patch[r0:r1] = (band + (colour - band) * cover).astype(np.uint8)
        return patch
