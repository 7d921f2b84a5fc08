"""Helpers for the MuseTalk tests: tiny models, a synthetic avatar, speech-like audio."""

from __future__ import annotations

import functools

import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk import MuseTalkEngine, MuseTalkModels, build_models, tiny_arch


def make_avatar(
    name: str = "synthetic", n: int = 3, width: int = 160, height: int = 128, seed: int = 0
) -> PreparedAvatar:
    """Random frames, a drifting square crop box and a lower-face mask (rows 128-239)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    side = min(width, height) - 24
    boxes = np.array([[8 + i, 10, 8 + i + side, 10 + side] for i in range(n)], dtype=np.int32)
    masks = np.zeros((n, 256, 256), dtype=np.float32)
    masks[:, 128:240, 48:208] = 1.0
    masks[:, 120:128, 48:208] = 0.5  # feathered edge
    return PreparedAvatar(
        name=name,
        frames=frames,
        fps=25.0,
        crop_boxes=boxes,
        landmarks=np.zeros((n, 468, 2), dtype=np.float32),
        masks=masks,
        mouth_boxes=np.zeros((n, 4), dtype=np.float32),
    )


@functools.cache
def tiny_models() -> MuseTalkModels:
    """One set of tiny random-weight networks shared by the tests of a process."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return build_models(tiny_arch(), seed=0)


@functools.cache
def engine() -> MuseTalkEngine:
    """A CPU engine over ``tiny_models`` with ``make_avatar()`` added."""
    eng = MuseTalkEngine(tiny_models())
    eng.add_avatar(make_avatar())
    return eng


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a syllable-rate envelope, int16 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    return (rng.standard_normal(n) * env * 4000).astype(np.int16)
