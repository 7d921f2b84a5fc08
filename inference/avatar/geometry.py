"""Face geometry from FaceMesh landmarks: crop boxes, blend masks, mouth boxes, smoothing.

All functions are pure numpy/OpenCV. Landmark indices are those of the 468-point FaceMesh.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "CHIN",
    "FACE_OVAL",
    "INNER_LIP_LOWER",
    "INNER_LIP_UPPER",
    "LEFT_EYE",
    "LIPS_OUTER",
    "MASK_SIZE",
    "MOUTH_LEFT",
    "MOUTH_RIGHT",
    "NOSE_MID",
    "RIGHT_EYE",
    "crop_box",
    "lower_face_mask",
    "mouth_box",
    "smooth_boxes",
    "smooth_landmarks",
]

MASK_SIZE = 256
# Silhouette, clockwise from the top of the forehead.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
LIPS_OUTER = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)  # fmt: skip
# Eye contours: (corner, ..., corner) with the upper and lower lid middles named below.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
INNER_LIP_UPPER = 13
INNER_LIP_LOWER = 14
MOUTH_RIGHT = 61  # the subject's right corner (image left)
MOUTH_LEFT = 291
CHIN = 152
NOSE_MID = 195  # on the nose bridge, like point 29 of the 68-point scheme MuseTalk uses


def crop_box(landmarks: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Square MuseTalk-style face crop (x0, y0, x1, y1) as float64.

    Like MuseTalk v1.5: the face spans from the face oval's left to right edge, and from as far
    above the nose bridge as the chin is below it, down to the chin plus a margin (v1.5 adds
    ``extra_margin`` below the chin so the jaw can open). Here the box is made square around
    that region and moved inside the frame where it fits.
    """
    oval = landmarks[list(FACE_OVAL)]
    x0, x1 = float(oval[:, 0].min()), float(oval[:, 0].max())
    nose_y = float(landmarks[NOSE_MID, 1])
    chin_y = float(landmarks[CHIN, 1])
    half = max(chin_y - nose_y, 1.0)
    top, bottom = nose_y - half, chin_y + 0.12 * half
    side = max(x1 - x0, bottom - top)
    cx, cy = (x0 + x1) / 2, (top + bottom) / 2
    width, height = frame_size
    side = min(side, float(min(width, height)))
    bx = float(np.clip(cx - side / 2, 0.0, width - side))
    by = float(np.clip(cy - side / 2, 0.0, height - side))
    return np.array([bx, by, bx + side, by + side], np.float64)


def smooth_boxes(boxes: np.ndarray, frame_size: tuple[int, int], sigma: float = 2.5) -> np.ndarray:
    """Temporal smoothing of square boxes (N, 4) → int32, so a video crop does not jitter.

    Centres are Gaussian-smoothed over time with ``sigma`` frames, the side with twice that;
    boxes stay square and inside the frame.
    """
    boxes = np.asarray(boxes, np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = boxes[:, 2] - boxes[:, 0]
    if len(boxes) > 1:
        centres = np.stack([_gauss1d(centres[:, i], sigma) for i in range(2)], axis=1)
        sides = _gauss1d(sides, 2 * sigma)
    width, height = frame_size
    out = np.empty((len(boxes), 4), np.int32)
    for i, ((cx, cy), side) in enumerate(zip(centres, sides, strict=True)):
        s = round(min(side, width, height))
        x0 = int(np.clip(round(cx - s / 2), 0, width - s))
        y0 = int(np.clip(round(cy - s / 2), 0, height - s))
        out[i] = (x0, y0, x0 + s, y0 + s)
    return out


def smooth_landmarks(landmarks: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Light temporal Gaussian smoothing of (N, 468, 2) landmarks (removes FaceMesh jitter)."""
    if len(landmarks) < 3 or sigma <= 0:
        return landmarks.astype(np.float32)
    flat = landmarks.reshape(len(landmarks), -1).astype(np.float64)
    return _gauss_axis0(flat, sigma).reshape(landmarks.shape).astype(np.float32)


def mouth_box(landmarks: np.ndarray, pad: float = 0.15) -> np.ndarray:
    """Box (x0, y0, x1, y1) float32 around the outer lips, padded by ``pad`` of its width."""
    lips = landmarks[list(LIPS_OUTER)]
    lo, hi = lips.min(axis=0), lips.max(axis=0)
    margin = pad * float(hi[0] - lo[0])
    return np.array([lo[0] - margin, lo[1] - margin, hi[0] + margin, hi[1] + margin], np.float32)


def lower_face_mask(landmarks: np.ndarray, box: np.ndarray, size: int = MASK_SIZE) -> np.ndarray:
    """Feathered lower-face mask (size, size) float32 in [0, 1], in the crop ``box`` coordinates.

    The polygon is the face oval below the nose bridge, closed by a line at the bridge's
    height and pushed outward a little (most below the chin, so an opening jaw stays inside);
    its edge is feathered with a Gaussian so a blend through it leaves no seam.
    """
    x0, y0, x1, _ = (float(v) for v in box)
    scale = size / max(x1 - x0, 1e-6)
    pts = (landmarks[list(FACE_OVAL)].astype(np.float64) - (x0, y0)) * scale
    nose = (landmarks[NOSE_MID].astype(np.float64) - (x0, y0)) * scale
    chin = (landmarks[CHIN].astype(np.float64) - (x0, y0)) * scale
    cut = nose[1]
    lower = _clip_polygon_below(pts, cut)
    centre = np.array([nose[0], cut])
    reach = max(chin[1] - cut, 1.0)
    rel = lower - centre
    down = np.clip(rel[:, 1] / reach, 0.0, 1.0)  # 0 at the cut line, 1 at the chin
    grow = 1.0 + 0.04 + 0.10 * down
    lower = centre + rel * grow[:, None]
    canvas = np.zeros((size, size), np.float32)
    cv2.fillPoly(canvas, [np.round(lower * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    sigma = 0.025 * size
    mask = cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def _clip_polygon_below(poly: np.ndarray, cut: float) -> np.ndarray:
    """The part of a closed polygon with y >= cut (Sutherland–Hodgman against one line)."""
    out: list[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[1] >= cut, b[1] >= cut
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (cut - a[1]) / (b[1] - a[1])
            out.append(a + t * (b - a))
    return np.asarray(out, np.float64).reshape(-1, 2)


def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, round(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _gauss1d(values: np.ndarray, sigma: float) -> np.ndarray:
    return _gauss_axis0(values[:, None], sigma)[:, 0]


def _gauss_axis0(values: np.ndarray, sigma: float) -> np.ndarray:
    kernel = _gauss_kernel(sigma)
    r = len(kernel) // 2
    padded = np.pad(values, ((r, r), (0, 0)), mode="edge")
    out = np.zeros_like(values, dtype=np.float64)
    for i, k in enumerate(kernel):
        out += k * padded[i : i + len(values)]
    return out
