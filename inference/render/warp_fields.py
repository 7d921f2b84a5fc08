"""Geometry of the warp renderer: mouth and eye frames, canonical displacement fields.

The mouth is described in a *canonical* frame: ``u`` along the line between the mouth corners
(in half mouth widths, corners at ±1) and ``v`` towards the chin (in lip-line-to-chin distances,
the chin at ≈1). Displacement fields are drawn once per avatar on a small grid in that frame
(they follow the avatar's own jaw contour) and mapped to the pixels of any output size with one
``cv2.warpAffine`` — so the per-frame work is a few array operations and one ``cv2.remap`` on
the lower-face region only. Every field falls smoothly to zero at the edge of its support, so
the warped region meets the untouched frame without a seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..avatar.geometry import (
    CHIN,
    FACE_OVAL,
    INNER_LIP_LOWER,
    INNER_LIP_UPPER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
)

__all__ = ["EYES", "CanonicalFields", "EyeFrame", "MouthFrame", "build_fields", "smoothstep"]

# Inner-lip landmark pairs (upper, lower) across the mouth, and the inner corners.
_INNER_PAIRS = (
    (191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318),
    (415, 324), (78, 78), (308, 308),
)  # fmt: skip
# (outer corner, inner corner, upper lid middle, lower lid middle) of each eye.
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))
_GRID = 96  # texels per side of the canonical field texture
_V_TOP = -0.6  # canonical v of the top of the region (between mouth and nose)


def smoothstep(edge0: float, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, a smooth cubic between."""
    t = np.clip((x - edge0) / np.maximum(np.asarray(edge1) - edge0, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True, slots=True)
class MouthFrame:
    """The mouth's canonical frame in some pixel space."""

    centre: np.ndarray  # (2,) between the inner lip middles
    ex: np.ndarray  # (2,) unit vector from the subject's right corner to the left one
    ey: np.ndarray  # (2,) unit vector perpendicular to ex, towards the chin
    half_width: float  # pixels from the centre to a corner
    chin: float  # pixels from the lip line to the chin along ey
    tilt: float = 0.0  # the lip line's midline: v = tilt·u − bend·u² (canonical units)
    bend: float = 0.0  # > 0: the corners are higher than the middle (a smile)

    @classmethod
    def from_landmarks(cls, marks: np.ndarray) -> MouthFrame:
        pts = marks.astype(np.float64)
        centre = (pts[INNER_LIP_UPPER] + pts[INNER_LIP_LOWER]) / 2
        across = pts[MOUTH_LEFT] - pts[MOUTH_RIGHT]
        half_width = max(float(np.hypot(*across)) / 2, 1.0)
        ex = across / (2 * half_width)
        ey = np.array([-ex[1], ex[0]])
        if float(np.dot(pts[CHIN] - centre, ey)) < 0:
            ey = -ey
        chin = max(float(np.dot(pts[CHIN] - centre, ey)), half_width * 0.5)
        frame = cls(centre, ex, ey, half_width, chin)
        upper, lower = (list(side) for side in zip(*_INNER_PAIRS, strict=True))
        mids = frame.to_canonical((pts[upper] + pts[lower]) / 2)
        coef = np.polyfit(mids[:, 0], mids[:, 1], 2)  # bend, tilt, offset
        bend = float(np.clip(-coef[0], -0.3, 0.3))
        tilt = float(np.clip(coef[1], -0.3, 0.3))
        return cls(centre, ex, ey, half_width, chin, tilt, bend)

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) pixels → (K, 2) canonical (u, v)."""
        rel = points.astype(np.float64) - self.centre
        return np.stack([rel @ self.ex / self.half_width, rel @ self.ey / self.chin], axis=1)

    def canonical_to_pixel(self) -> np.ndarray:
        """2×3 affine taking canonical (u, v) to pixels."""
        a = np.column_stack([self.ex * self.half_width, self.ey * self.chin])
        return np.column_stack([a, self.centre])


@dataclass(frozen=True, slots=True)
class CanonicalFields:
    """Displacement fields on a grid over the canonical mouth region.

    Channels: 0 ``low`` — downward travel of the lower lip and jaw (× lower-lip opening);
    1 ``up`` — upward travel of the upper lip; 2 ``side`` — sideways travel (× corner travel),
    3 ``lens`` — the opening's profile across the mouth (0 at the corners, 1 in the middle).
    """

    texture: np.ndarray  # (rows, cols, 4) float32
    u_range: tuple[float, float]
    v_range: tuple[float, float]

    def texel_affine(self) -> np.ndarray:
        """3×3 affine taking canonical (u, v) to texel (column, row) coordinates."""
        rows, cols = self.texture.shape[:2]
        su = (cols - 1) / (self.u_range[1] - self.u_range[0])
        sv = (rows - 1) / (self.v_range[1] - self.v_range[0])
        return np.array(
            [[su, 0, -self.u_range[0] * su], [0, sv, -self.v_range[0] * sv], [0, 0, 1]],
            np.float64,
        )

    def corners(self) -> np.ndarray:
        """(4, 2) canonical corners of the region."""
        (u0, u1), (v0, v1) = self.u_range, self.v_range
        return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def build_fields(landmarks: np.ndarray) -> CanonicalFields:
    """Fields for an avatar from its (N, 468, 2) landmarks (the jaw shape is the median's)."""
    marks = np.median(landmarks, axis=0) if landmarks.ndim == 3 else landmarks
    frame = MouthFrame.from_landmarks(marks)
    oval = frame.to_canonical(marks[list(FACE_OVAL)])
    jaw = oval[oval[:, 1] > -0.3]
    jaw = jaw[np.argsort(jaw[:, 0])]
    jaw_half = float(np.clip(np.abs(jaw[:, 0]).max(), 1.3, 4.0)) if len(jaw) else 2.4
    chin_v = float(np.clip(np.interp(0.0, jaw[:, 0], jaw[:, 1]) if len(jaw) > 1 else 1.0, 0.5, 2))
    u_range = (-1.05 * jaw_half, 1.05 * jaw_half)
    v_range = (_V_TOP, chin_v + 0.5)
    u = np.linspace(*u_range, _GRID)[None, :]
    v = np.linspace(*v_range, _GRID)[:, None]
    au = np.abs(u)
    if len(jaw) > 1:
        contour = np.interp(u[0], jaw[:, 0], jaw[:, 1], left=0.0, right=0.0)[None, :]
    else:
        contour = np.full_like(u, chin_v)
    lens = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.85  # almond-shaped opening
    broad = 1.0 - smoothstep(0.55 * jaw_half, 0.95 * jaw_half, au)
    to_jaw = smoothstep(0.0, 0.5, v)
    below_jaw = 1.0 - smoothstep(0.0, 0.4, v - np.maximum(contour, 0.15))
    low = np.where(v >= 0, (lens + (broad - lens) * to_jaw) * below_jaw, lens)
    up = np.where(v <= 0, lens * (1.0 - smoothstep(0.12, 0.45, -v)), lens)
    side = u * (1.0 - smoothstep(1.1, 2.0, au)) * (1.0 - smoothstep(0.2, 0.55, np.abs(v)))
    # Everything fades out before the region's edge, so the warp leaves no seam there.
    edge = (1.0 - smoothstep(0.85 * u_range[1], u_range[1], au)) * smoothstep(
        _V_TOP, 0.8 * _V_TOP, v
    )
    stack = [low * edge, up * edge, side * edge, np.broadcast_to(lens, low.shape)]
    texture = np.stack([np.asarray(c, np.float32) for c in stack], axis=-1)
    return CanonicalFields(np.ascontiguousarray(texture), u_range, v_range)


@dataclass(frozen=True, slots=True)
class EyeFrame:
    """One eye in pixels: centre, axis along the corners, lid positions at the middle."""

    centre: np.ndarray  # (2,)
    ex: np.ndarray  # (2,) unit, corner to corner
    ey: np.ndarray  # (2,) unit, downwards
    half_width: float
    upper: float  # signed distance of the upper lid middle from the centre along ey (< 0)
    lower: float  # same for the lower lid (> 0)

    @classmethod
    def from_landmarks(cls, marks: np.ndarray, eye: tuple[int, int, int, int]) -> EyeFrame:
        pts = marks.astype(np.float64)
        a, b, top, bottom = (pts[i] for i in eye)
        across = b - a
        half_width = max(float(np.hypot(*across)) / 2, 1.0)
        ex = across / (2 * half_width)
        ey = np.array([-ex[1], ex[0]])
        if ey[1] < 0:
            ey, ex = -ey, -ex
        centre = (a + b) / 2
        upper = float(np.dot(top - centre, ey))
        lower = float(np.dot(bottom - centre, ey))
        if lower - upper < 0.5:  # already closed in the source
            upper, lower = upper - 0.25, upper + 0.25
        return cls(centre, ex, ey, half_width, upper, lower)

    def roi(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Integer box (x0, y0, x1, y1) around the eye and the lid skin above it."""
        opening = self.lower - self.upper
        corners = []
        for su in (-1.25, 1.25):
            for sv in (self.upper - 0.8 * opening, self.lower + 0.6 * opening):
                corners.append(self.centre + su * self.half_width * self.ex + sv * self.ey)
        pts = np.array(corners)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
        w, h = size
        return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def apply_blink(frame: np.ndarray, eye: EyeFrame, amount: float) -> None:
    """Close the eye by ``amount`` (0 open … 1 closed) in place: the upper lid slides down.

    The area the lid covers shows the lid skin above the lashes, folded down from the lid's
    rest line (the old lash line reads as the crease of the closed lid); a soft dark lash line
    follows the moving edge. The eye below the
    edge does not move, as when a real lid passes over the eyeball.
    """
    if amount <= 0.01:
        return
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = eye.roi((w, h))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(eye.centre[0])
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(eye.centre[1])
    u = (xs * eye.ex[0] + ys * eye.ex[1]) / np.float32(eye.half_width)
    v = xs * eye.ey[0] + ys * eye.ey[1]
    opening = eye.lower - eye.upper
    shape = np.clip(1.0 - u * u, 0.0, 1.0)
    top = eye.upper * shape  # the lid's rest line
    travel = np.float32(min(max(amount, 0.0), 1.0) * opening) * shape
    lid = top + travel  # where the lid edge is now
    fold = np.minimum(1.0, 0.4 * opening / np.maximum(travel, 1e-3))
    skip = np.minimum(travel, 0.3 * opening)  # start above the dark lash line as it closes
    covered = (v >= top) & (v < lid)
    v_src = np.where(covered, top - skip - (lid - v) * fold, v)
    shift = (v_src - v).astype(np.float32)
    map_x = xs + np.float32(eye.centre[0]) + shift * np.float32(eye.ey[0])
    map_y = ys + np.float32(eye.centre[1]) + shift * np.float32(eye.ey[1])
    patch = cv2.remap(
        frame, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    lash = np.exp(-(((v - lid) / max(0.1 * opening, 0.6)) ** 2)) * smoothstep(0.0, 0.15, shape)
    dark = 1.0 - 0.5 * min(1.0, amount * 1.5) * lash
    frame[y0:y1, x0:x1] = np.clip(patch * dark[:, :, None], 0, 255).astype(np.uint8)
