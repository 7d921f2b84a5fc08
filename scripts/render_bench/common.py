"""What every part of the render benchmark uses: synthetic inputs, timing and FLOP
counting, jobs for the engine, PSNR."""

from __future__ import annotations

import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk import FrameJob, MuseTalkEngine

FPS = 25
T = TypeVar("T")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_avatar(n: int, width: int, height: int) -> PreparedAvatar:
    """Smooth random frames, a face box drifting a little, an elliptical lower-face mask."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (n, height // 16, width // 16, 3), dtype=np.uint8)
    frames = np.stack(
        [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in small]
    )
    side = min(width, height) * 4 // 9
    cx, cy = width // 2, height // 2
    boxes = np.array(
        [
            [cx - side // 2 + i % 5, cy - side // 2, cx + side // 2 + i % 5, cy + side // 2]
            for i in range(n)
        ],
        dtype=np.int32,
    )
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    ellipse = (((xx - 128) / 86) ** 2 + ((yy - 196) / 72) ** 2 <= 1.0).astype(np.float32)
    mask = cv2.GaussianBlur(ellipse, (0, 0), 5.0)
    return PreparedAvatar(
        name="bench",
        frames=frames,
        fps=25.0,
        crop_boxes=boxes,
        landmarks=np.zeros((n, 468, 2), np.float32),
        masks=np.repeat(mask[None], n, axis=0),
        mouth_boxes=np.zeros((n, 4), np.float32),
    )


def speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    return (rng.standard_normal(len(t)) * env * 4000).astype(np.int16)


def dense_tflops(device: torch.device, quick: bool) -> float:
    n = 8192 if device.type == "cuda" and not quick else 512
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def gflop(fn: Callable[[], object], frames: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() / frames / 1e9


def time_call(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Median seconds of ``fn`` (synchronized) over ``reps`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jobs_for(eng: MuseTalkEngine, windows: torch.Tensor, n: int, start: int = 0) -> list[FrameJob]:
    av = eng.avatar("bench")
    return [
        FrameJob("bench", (start + i) % av.num_frames, windows[(start + i) % len(windows)])
        for i in range(n)
    ]


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a new thread (cuDNN's tuned plans are per thread: a fresh one tunes)."""
    box: list[T] = []
    err: list[BaseException] = []

    def body() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            err.append(exc)

    th = threading.Thread(target=body)
    th.start()
    th.join()
    if err:
        raise err[0]
    return box[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)
