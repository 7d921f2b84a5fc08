"""The two paths the benchmark compares: (a) the reference-style loop, as MuseTalk's realtime
script runs it, and (b) ours, batches back to back as the scheduler runs them."""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk import FrameJob, MuseTalkEngine
from inference.render.musetalk.config import LATENT_SCALE
from render_bench.common import jobs_for, sync


def reference_path(
    eng: MuseTalkEngine, avatar: PreparedAvatar, windows: torch.Tensor, batch: int, batches: int
) -> tuple[float, float, list[np.ndarray]]:
    """MuseTalk-realtime-style loop. Returns (frames/s, median ms per GPU batch, frames)."""
    boxes = avatar.crop_boxes
    masks = [
        cv2.resize(m, (int(b[2] - b[0]), int(b[3] - b[1])))[..., None]
        for m, b in zip(avatar.masks, boxes, strict=True)
    ]
    q: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue()
    out: list[np.ndarray] = []

    def blend_worker() -> None:  # the reference's process_frames thread
        while (item := q.get()) is not None:
            idx, face = item
            x0, y0, x1, y1 = (int(v) for v in boxes[idx])
            frame = avatar.frames[idx].copy()
            face = cv2.resize(face, (x1 - x0, y1 - y0))
            region = frame[y0:y1, x0:x1].astype(np.float32)
            m = masks[idx]
            frame[y0:y1, x0:x1] = (face.astype(np.float32) * m + region * (1.0 - m)).astype(
                np.uint8
            )
            out.append(frame)

    ms: list[float] = []
    worker = threading.Thread(target=blend_worker)
    t_start = 0.0
    for k in range(batches + 1):
        if k == 1:  # batch 0 is warm-up
            sync(eng.device)
            worker.start()
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        jobs = jobs_for(eng, windows, batch, k * batch)
        with torch.inference_mode():
            lat = eng.predict_latents(jobs)
            image = eng.models.vae.decode(lat / LATENT_SCALE).sample
            image = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        faces = (image * 255).round().astype(np.uint8)
        ms.append((time.perf_counter() - t0) * 1000)
        if k >= 1:
            for j, face in zip(jobs, faces, strict=True):
                q.put((j.index, face))
    q.put(None)
    worker.join()
    wall = time.perf_counter() - t_start
    return batch * batches / wall, statistics.median(ms[1:]), out


def pipelined(eng: MuseTalkEngine, batches: Sequence[Sequence[FrameJob]]) -> float:
    """Seconds for ``batches`` back to back as the scheduler runs them: batch k+1 queued
    once batch k is computed, k's frames handed out while k+1 runs."""
    sync(eng.device)
    t0 = time.perf_counter()
    eng.run_pipelined(batches)
    return time.perf_counter() - t0


def throughput(eng: MuseTalkEngine, windows: torch.Tensor, b: int, n: int) -> float:
    """Frames/s of ``n`` batches of ``b`` back to back (after two to warm up)."""
    batches = [jobs_for(eng, windows, b, k * b) for k in range(n)]
    pipelined(eng, batches[:2])
    return n * b / pipelined(eng, batches)
