"""Face detection and FaceMesh landmarks with mediapipe 0.10.21 (which ships its face models).

``FaceAnalyzer`` is created once per process (it loads the TFLite models) and analyses frames
one at a time: full-range face detection finds every face, the chosen one (the largest, or in a
video the one that overlaps the previous choice) is cropped, and FaceMesh runs on that crop, so
other faces and small faces in a wide frame do not confuse it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["FaceAnalyzer", "FaceObservation"]

_MESH_POINTS = 468
_MESH_INPUT = 384  # side of the square crop given to FaceMesh


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """What one frame holds: every detected face box and the chosen face's landmarks."""

    boxes: np.ndarray  # (F, 4) float32 x0, y0, x1, y1 of every detected face, source pixels
    chosen: int  # index into boxes of the animated face, -1 when none was found
    landmarks: np.ndarray | None  # (468, 2) float32 source pixels, None when not found

    @property
    def face_box(self) -> np.ndarray | None:
        return None if self.chosen < 0 else self.boxes[self.chosen]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceAnalyzer:
    """Detects faces and finds the 468 FaceMesh landmarks of one chosen face per frame.

    Not thread-safe per call; an internal lock serialises concurrent ``analyze`` calls.
    """

    def __init__(self, *, refine_landmarks: bool = False, min_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "avatar preparation needs mediapipe 0.10.21 (FaceMesh): "
                "pip install --no-deps mediapipe==0.10.21 and the 'face' extra"
            ) from exc
        self._lock = threading.Lock()
        self._detector: Any = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )
        self._mesh: Any = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_confidence,
        )
        self._full_mesh: Any = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=4,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_confidence,
        )

    def close(self) -> None:
        """Release the mediapipe graphs."""
        for graph in (self._detector, self._mesh, self._full_mesh):
            graph.close()

    def analyze(self, frame: np.ndarray, previous: np.ndarray | None = None) -> FaceObservation:
        """Faces of one RGB uint8 frame; ``previous`` is the face box chosen in the frame before."""
        with self._lock:
            boxes = self._detect(frame)
            if len(boxes) == 0:
                # The detector can miss a face that fills the frame; FaceMesh alone may find it.
                marks = self._mesh_full(frame)
                if not marks:
                    return FaceObservation(np.zeros((0, 4), np.float32), -1, None)
                boxes = np.stack([_box_of(m) for m in marks]).astype(np.float32)
                chosen = self._choose(boxes, previous)
                return FaceObservation(boxes, chosen, marks[chosen])
            chosen = self._choose(boxes, previous)
            landmarks = self._mesh_crop(frame, boxes[chosen])
            return FaceObservation(boxes, chosen, landmarks)

    @staticmethod
    def _choose(boxes: np.ndarray, previous: np.ndarray | None) -> int:
        if previous is not None:
            overlaps = [_iou(b, previous) for b in boxes]
            best = int(np.argmax(overlaps))
            if overlaps[best] > 0.2:
                return best
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(areas))

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        result = self._detector.process(frame)
        out = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            x0, y0 = rel.xmin * w, rel.ymin * h
            x1, y1 = x0 + rel.width * w, y0 + rel.height * h
            x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
            if x1 - x0 > 1 and y1 - y0 > 1:
                out.append((x0, y0, x1, y1))
        return np.asarray(out, np.float32).reshape(-1, 4)

    def _mesh_full(self, frame: np.ndarray) -> list[np.ndarray]:
        h, w = frame.shape[:2]
        result = self._full_mesh.process(frame)
        return [_points(face, w, h) for face in result.multi_face_landmarks or []]

    def _mesh_crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = 2.0 * max(box[2] - box[0], box[3] - box[1])
        scale = _MESH_INPUT / side
        # Affine from the source frame to a square crop around the face (border replicated).
        affine = np.array(
            [
                [scale, 0.0, _MESH_INPUT / 2 - scale * cx],
                [0.0, scale, _MESH_INPUT / 2 - scale * cy],
            ],
            np.float32,
        )
        crop = cv2.warpAffine(
            frame,
            affine,
            (_MESH_INPUT, _MESH_INPUT),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        pts = _points(result.multi_face_landmarks[0], _MESH_INPUT, _MESH_INPUT)
        pts[:, 0] = (pts[:, 0] - affine[0, 2]) / scale
        pts[:, 1] = (pts[:, 1] - affine[1, 2]) / scale
        return pts


def _points(face: Any, width: int, height: int) -> np.ndarray:
    pts = np.array([(p.x * width, p.y * height) for p in face.landmark], np.float32)
    return pts[:_MESH_POINTS]


def _box_of(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(axis=0), *points.max(axis=0)], np.float32)
