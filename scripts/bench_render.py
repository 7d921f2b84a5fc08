"""MuseTalk render throughput on one GPU: the reference-style path against ours, in one run.

    PYTHONPATH=. python scripts/bench_render.py --out docs/bench_render_h100.txt
    PYTHONPATH=. python scripts/bench_render.py --arch tiny --device cpu --quick   # smoke
    PYTHONPATH=. python scripts/bench_render.py --explore nchw,cl,cl-dtuned        # variants

(a) reference-style, as MuseTalk's realtime script does it: eager fp16 NCHW, batch 20, full
    VAE decode, frames to the host as float, then per frame cv2 resize + numpy mask blend on
    the CPU in a consumer thread (overlapping the GPU, as that script's frame thread does).
(b) ours: ``MuseTalkEngine`` (fp16, torch.compile as one static graph at the batch cap,
    channels-last, the decoder with coordinate-descent tuning, blend on the GPU, uint8 frames
    to the host on a copy stream, UNet + decode replayed as one CUDA graph), batches back
    to back as the scheduler runs them, with the full decode and with the decode of only
    the latent window under the mask (quality checked against the full decode).
(a) and (b) run in turns (``--rounds``); the table gives each one's median.
Then the largest number of simultaneous 25 fps calls whose frames all meet their deadline
at p99, under a simulated load through ``RenderScheduler`` (audio features on its audio
lane, as the renderer computes them), after one warm-up trial that is not counted.
``--explore`` instead compares compile variants of the full path, the audio lane's overlap
with rendering, and the mask-window decode's quality for several margins.
Random weights: the speed is that of the real architecture; the pictures are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import functools
import gc
import getpass
import lzma
import math
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk import (
    EngineOptions,
    FrameJob,
    MuseTalkEngine,
    build_models,
    official_arch,
    tiny_arch,
    windows_for_audio,
)
from inference.render.musetalk.config import LATENT_SCALE
from inference.render.musetalk.engine import TUNED_INDUCTOR
from inference.render.musetalk.model import MuseTalkModels
from inference.render.scheduler import RenderScheduler, SchedulerOptions

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
    prev = None
    for jobs in batches:
        if prev is not None:
            prev.wait_computed()
        cur = eng.submit_batch(jobs)
        if prev is not None:
            eng.finish_batch(prev)
        prev = cur
    if prev is not None:
        eng.finish_batch(prev)
    return time.perf_counter() - t0


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


def throughput(eng: MuseTalkEngine, windows: torch.Tensor, b: int, n: int) -> float:
    """Frames/s of ``n`` batches of ``b`` back to back (after two to warm up)."""
    batches = [jobs_for(eng, windows, b, k * b) for k in range(n)]
    pipelined(eng, batches[:2])
    return n * b / pipelined(eng, batches)


class GcPauses:
    """Time the interpreter spends in cyclic garbage collection (all threads stop)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.full = 0  # collections of the oldest generation
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self._t0
        self.total += pause
        self.longest = max(self.longest, pause)
        self.full += info.get("generation", 0) == 2

    def mark(self) -> tuple[float, int]:
        self.longest = 0.0
        return self.total, self.full

    def since(self, mark: tuple[float, int]) -> str:
        return (
            f"GC pauses {(self.total - mark[0]) * 1000:.0f} ms (longest "
            f"{self.longest * 1000:.0f} ms, {self.full - mark[1]} full)"
        )


def fresh_thread_batches(
    eng: MuseTalkEngine, windows: torch.Tensor, b: int
) -> tuple[float, float, float]:
    """Seconds of a batch in the main thread, then of a fresh thread's first and second
    batch (cuDNN's tuned plans are per thread: the first one tunes every convolution)."""
    jobs = jobs_for(eng, windows, b)

    def two() -> tuple[float, float]:
        times = []
        for _ in range(2):
            sync(eng.device)
            t0 = time.perf_counter()
            eng.run_batch(jobs)
            times.append(time.perf_counter() - t0)
        return times[0], times[1]

    main = two()[1]
    first, second = in_thread(two)
    return main, first, second


def cudnn_limit_zero(
    say: Callable[[str], None],
    ref: MuseTalkEngine,
    ours: MuseTalkEngine,
    avatar: PreparedAvatar,
    windows: torch.Tensor,
    b: int,
) -> None:
    """The reference and our full path in a fresh thread (an empty cuDNN plan cache), with
    cuDNN's benchmark_limit at 10 (its default: 10 algorithms timed per convolution) and at
    0 (every algorithm)."""
    old = torch.backends.cudnn.benchmark_limit
    try:
        for limit in (10, 0):
            torch.backends.cudnn.benchmark_limit = limit

            def work() -> tuple[float, float, float]:
                t0 = time.perf_counter()
                ours.run_batch(jobs_for(ours, windows, b))
                tune = time.perf_counter() - t0
                r = reference_path(ref, avatar, windows, 20, 15)[0]
                return tune, r, throughput(ours, windows, b, 12)

            tune, r, o = in_thread(work)
            say(
                f"cuDNN benchmark_limit {limit:>2}, fresh thread: first batch {tune:.1f} s "
                f"(tuning); reference {r:.1f} fps, ours full {o:.1f} fps, ratio {o / r:.2f}x"
            )
    finally:
        torch.backends.cudnn.benchmark_limit = old


def kernel_profile(say: Callable[[str], None], eng: MuseTalkEngine, jobs: list[FrameJob]) -> None:
    """Device time of one batch by kernel family, and its largest kernels."""
    from torch.profiler import ProfilerActivity, profile

    eng.run_batch(jobs)
    sync(eng.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        eng.run_batch(jobs)
        sync(eng.device)
    per: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per[e.name] = per.get(e.name, 0.0) + e.time_range.elapsed_us() / 1000

    def family(name: str) -> str:
        n = name.lower()
        if n.startswith("triton"):
            return "triton (fused pointwise/norm)"
        if any(k in n for k in ("flash", "fmha", "attention")):
            return "attention"
        if any(k in n for k in ("conv", "cudnn", "xmma", "implicit", "nhwc", "winograd")):
            return "convolution"
        if any(k in n for k in ("gemm", "cutlass", "sm90", "ampere")):
            return "gemm"
        if "memcpy" in n or "memset" in n:
            return "copies"
        return "other"

    fams: dict[str, float] = {}
    for name, ms in per.items():
        fams[family(name)] = fams.get(family(name), 0.0) + ms
    total = sum(per.values())
    say(
        f"kernel time of one batch of {len(jobs)} ({eng.options.decode} decode): {total:.1f} ms; "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(fams.items(), key=lambda kv: -kv[1]))
    )
    for name, ms in sorted(per.items(), key=lambda kv: -kv[1])[:8]:
        say(f"    {ms:7.2f} ms  {name[:110]}")


def load_compile_cache(folder: Path | None) -> str:
    """Load torch.compile artifacts saved by an earlier run (``save_compile_cache``)."""
    if folder is None:
        return ""
    parts = sorted(folder.glob("compile_cache.*"))
    if not parts:
        return f"no compile cache in {folder}"
    blob = lzma.decompress(b"".join(p.read_bytes() for p in parts))
    torch.compiler.load_cache_artifacts(blob)
    return f"compile cache loaded ({len(blob) / 2**20:.0f} MiB)"


def save_compile_cache(folder: Path | None, limit_mib: float = 56.0) -> str:
    """Save this process's torch.compile artifacts, compressed, in pieces of 15 MiB."""
    if folder is None:
        return ""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return "no compile artifacts to save"
    blob = lzma.compress(saved[0], preset=1)
    size = len(blob) / 2**20
    if size > limit_mib:
        return f"compile cache {size:.0f} MiB compressed: not saved (over {limit_mib:.0f})"
    folder.mkdir(parents=True, exist_ok=True)
    piece = 15 * 2**20
    for k in range(0, len(blob), piece):
        (folder / f"compile_cache.{k // piece:03d}").write_bytes(blob[k : k + piece])
    return f"compile cache saved: {len(saved[0]) / 2**20:.0f} MiB, {size:.0f} MiB compressed"


def inductor_cache_warm() -> bool:
    """Whether torch.compile's on-disk cache already holds entries (an earlier process)."""
    user = getpass.getuser()
    default = Path(tempfile.gettempdir()) / f"torchinductor_{user}"
    root = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", default))
    return root.is_dir() and any(root.iterdir())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def load_trial(
    sched: RenderScheduler,
    eng: MuseTalkEngine,
    sessions: int,
    seconds: float,
    warm: float,
    sentence_s: tuple[float, float] = (2.0, 4.0),
    precomputed: torch.Tensor | None = None,
) -> dict[str, float]:
    """``sessions`` calls talking continuously (sentences of ``sentence_s`` seconds, each
    arriving 0.5 s before the previous one ends); lateness of frames due after ``warm`` s."""
    clock = sched.clock
    late: list[float] = []
    rendered: dict[str, set[int]] = {}
    t0 = clock() + 0.2
    t_end = t0 + warm + seconds

    outstanding = [0]
    wake: list[Callable[[], object]] = []
    lock = threading.Lock()

    def on_done(fut: Future[np.ndarray], deadline: float, seen: set[int]) -> None:
        # record, then let go of the frame: a real call releases it once encoded
        if t0 + warm <= deadline <= t_end:
            late.append(clock() - deadline)
            seen.add(id(fut.result()))
        with lock:
            outstanding[0] -= 1
            if outstanding[0] == 0 and wake:
                wake[0]()

    async def call(k: int) -> None:
        name = f"call{k}"
        sched.open_session(name, fps=FPS)
        rng = np.random.default_rng(k)
        arrival = t0 + rng.uniform(0, 1.0)
        play_end, frame_no = 0.0, 0
        seen = rendered.setdefault(name, set())
        n_frames = eng.avatar("bench").num_frames
        while arrival < t_end:
            await asyncio.sleep(max(0.0, arrival - clock()))
            audio = speech_like(rng.uniform(*sentence_s), seed=k * 1000 + frame_no)
            if precomputed is None:  # features on the scheduler's audio lane, as the renderer
                feats = sched.call_audio(windows_for_audio, eng.audio, audio)
                windows = await asyncio.wrap_future(feats)
            else:
                windows = precomputed[: len(audio) * FPS // 16000]
            start = max(clock() + 0.3, play_end)
            n = int(windows.shape[0])
            jobs = [FrameJob("bench", (frame_no + i) % n_frames, windows[i]) for i in range(n)]
            deadlines = [start + i / FPS for i in range(n)]
            with lock:
                outstanding[0] += n
            for fut, d in zip(
                sched.submit_many(name, frame_no, jobs, deadlines), deadlines, strict=True
            ):
                fut.add_done_callback(functools.partial(on_done, deadline=d, seen=seen))
            frame_no += n
            play_end = start + n / FPS
            arrival = play_end - 0.5  # the next sentence's audio comes 0.5 s before this one ends

    async def main() -> None:
        loop = asyncio.get_running_loop()
        zero = asyncio.Event()
        wake.append(functools.partial(loop.call_soon_threadsafe, zero.set))
        await asyncio.gather(*(call(k) for k in range(sessions)))
        while outstanding[0] > 0:
            zero.clear()
            await zero.wait()
        for k in range(sessions):
            sched.close_session(f"call{k}")

    before = (
        sched.stats.repeated,
        sched.stats.dropped_late,
        sched.stats.frames,
        sched.stats.batches,
        sched.stats.busy_s,
        time.perf_counter(),
        sched.stats.device_s,
    )
    asyncio.run(main())
    lat = np.array(late)
    per_call = [len(v) / seconds for v in rendered.values()]
    return {
        "sessions": sessions,
        "frames": len(lat),
        "p99_ms": float(np.percentile(lat, 99) * 1000) if len(lat) else float("nan"),
        "max_ms": float(lat.max() * 1000) if len(lat) else float("nan"),
        "repeated": sched.stats.repeated - before[0],
        "dropped": sched.stats.dropped_late - before[1],
        "mean_batch": (sched.stats.frames - before[2]) / max(1, sched.stats.batches - before[3]),
        "busy": (sched.stats.busy_s - before[4]) / (time.perf_counter() - before[5]),
        "gpu": (sched.stats.device_s - before[6]) / (time.perf_counter() - before[5]),
        "capacity": sched.stats.capacity_fps or 0.0,
        "min_fps": min(per_call) if per_call else 0.0,
        "max_fps": max(per_call) if per_call else 0.0,
    }


def passes(r: dict[str, float]) -> bool:
    return r["frames"] > 0 and r["p99_ms"] <= 0 and r["repeated"] == 0 and r["dropped"] == 0


def load_test(
    say: Callable[[str], None],
    eng: MuseTalkEngine,
    mode: str,
    best: tuple[float, int],
    q_mask: float,
    seconds: float,
    quick: bool,
    windows: torch.Tensor,
    gcp: GcPauses,
    deadline: float = math.inf,
    repeat_calls: int = 0,
) -> None:
    """Search the largest number of calls that meet their deadlines; then ``repeat_calls``
    calls twice more (is it reliable?); then overload. No trial starts after ``deadline``
    (perf_counter seconds)."""
    fps_best, b_best = best
    say(f"load test: {mode} decode (mask-window PSNR {q_mask:.1f} dB vs 30), batch cap {b_best}")
    eng.configure(decode=mode, max_batch=b_best)  # type: ignore[arg-type]
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=b_best))
    t0 = time.perf_counter()
    sched.start()  # warm-up on the worker thread: cuDNN's tuned plans are per thread
    gc.collect()  # then, as MuseTalkService.start, the compilation's objects out of the
    gc.freeze()  # GC's reach (a full collection of them stalled a trial for 0.5 s)
    say(f"scheduler start, engine warmed up on its worker thread: {time.perf_counter() - t0:.1f} s")
    warm = 0.5 if quick else 2.0
    sentence_s = (0.4, 0.8) if quick else (2.0, 4.0)
    n = max(1, int(0.75 * fps_best / FPS))
    trials: dict[int, dict[str, float]] = {}
    trial_s = warm + seconds + 5.0

    def time_left() -> bool:
        return time.perf_counter() + trial_s < deadline

    def describe(r: dict[str, float], gc_text: str) -> str:
        return (
            f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms, repeated "
            f"{int(r['repeated'])}, dropped {int(r['dropped'])}, mean batch "
            f"{r['mean_batch']:.1f}, engine busy {r['busy']:.0%}, GPU busy {r['gpu']:.0%}, "
            f"capacity estimate {r['capacity']:.0f} fps, {gc_text}"
        )

    if not quick:  # a first-time cost left out of the warm-up would show here
        mark = gcp.mark()
        r = load_trial(sched, eng, n, 3.0, 0.5, sentence_s)
        say(
            f"first trial right after start, {n} calls for 3 s (not counted): "
            + describe(r, gcp.since(mark))
        )
    for _ in range(2 if quick else 7):
        if not time_left():
            log("load test: time budget spent, search stopped")
            break
        mark = gcp.mark()
        trials[n] = r = load_trial(sched, eng, n, seconds, warm, sentence_s)
        log(f"{n} calls: " + describe(r, gcp.since(mark)))
        ok = [k for k, v in trials.items() if passes(v)]
        bad = [k for k, v in trials.items() if not passes(v)]
        lo, hi = (max(ok) if ok else 0), (min(bad) if bad else None)
        if hi is not None and hi - lo <= 1:
            break
        n = lo + max(1, (hi - lo) // 2) if hi is not None else lo + max(2, lo // 8)
        if n in trials:
            break
    say("")
    say(
        f"{'calls':>5} {'frames':>7} {'p99 late ms':>12} {'max late ms':>12} {'repeated':>9} "
        f"{'dropped':>8} {'mean batch':>10} {'GPU busy':>8}  meets p99"
    )
    for k in sorted(trials):
        r = trials[k]
        say(
            f"{k:>5} {int(r['frames']):>7} {r['p99_ms']:>12.1f} {r['max_ms']:>12.1f} "
            f"{int(r['repeated']):>9} {int(r['dropped']):>8} {r['mean_batch']:>10.1f} "
            f"{r['gpu']:>8.0%}  "
            f"{'yes' if passes(r) else 'no'}"
        )
    ok = [k for k, v in trials.items() if passes(v)]
    n_max = max(ok) if ok else 0
    say(
        "largest number of simultaneous 25 fps calls meeting deadlines "
        f"(p99 lateness <= 0, no repeated or dropped frames): {n_max}"
    )
    if repeat_calls and not quick:
        again = []
        for _ in range(2):
            if not time_left():
                break
            mark = gcp.mark()
            r = load_trial(sched, eng, repeat_calls, seconds, warm, sentence_s)
            again.append(r)
            log(f"{repeat_calls} calls again: " + describe(r, gcp.since(mark)))
        say(
            f"{repeat_calls} calls again, {len(again)} more trials: "
            + "; ".join(
                f"p99 {r['p99_ms']:.1f} ms, repeated {int(r['repeated'])}, dropped "
                f"{int(r['dropped'])}, {'meets' if passes(r) else 'misses'}"
                for r in again
            )
        )
    bad = [k for k, v in trials.items() if not passes(v)]
    probe = min(bad) if bad else n_max + 2
    if not time_left():
        say("diagnostic and overload trials skipped: time budget spent")
        sched.close()
        return
    r = load_trial(sched, eng, probe, seconds, warm, sentence_s, precomputed=windows)
    say(
        f"diagnostic, {probe} calls with audio features precomputed (GPU renders only): p99 "
        f"{r['p99_ms']:.1f} ms, repeated {int(r['repeated'])}, dropped {int(r['dropped'])}, "
        f"mean batch {r['mean_batch']:.1f}, engine busy {r['busy']:.0%}, GPU busy {r['gpu']:.0%}"
    )
    over = max(2, round(n_max * 1.4)) if n_max else 2
    if not time_left():
        say("overload trial skipped: time budget spent")
        sched.close()
        return
    r = load_trial(sched, eng, over, seconds, warm, sentence_s)
    say(
        f"overload, {over} calls: stride {sched.stats.stride}, rendered fps per call "
        f"min {r['min_fps']:.1f} / max {r['max_fps']:.1f}, p99 lateness {r['p99_ms']:.0f} ms"
    )
    sched.close()


# compile variants of the full path compared by --explore
_TUNED = dict(TUNED_INDUCTOR)
VARIANTS: dict[str, dict[str, object]] = {
    "nchw": {"channels_last": False, "decode_inductor": {}},
    "cl": {"channels_last": True, "decode_inductor": {}},
    "cl-tuned": {"channels_last": True, "unet_inductor": _TUNED, "decode_inductor": _TUNED},
    "cl-dtuned": {"channels_last": True, "decode_inductor": _TUNED},  # the default
    "nchw-tuned": {"channels_last": False, "unet_inductor": _TUNED, "decode_inductor": _TUNED},
    "cl-dfreeze": {"channels_last": True, "decode_inductor": {**_TUNED, "freezing": True}},
}


def audio_overlap(
    say: Callable[[str], None], eng: MuseTalkEngine, windows: torch.Tensor, b: int, quick: bool
) -> None:
    """Render throughput alone and with audio features computed meanwhile on the audio
    lane (a 3 s sentence every 1/7 s, about what 20 calls ask for)."""
    sentence = speech_like(0.6 if quick else 3.0, seed=5)

    def feats() -> float:
        t0 = time.perf_counter()
        with eng.audio_lane():
            windows_for_audio(eng.audio, sentence)
        return time.perf_counter() - t0

    alone = statistics.median([feats() for _ in range(6)])
    n = 3 if quick else 12
    batches = [jobs_for(eng, windows, b, k * b) for k in range(n)]
    pipelined(eng, batches[:2])
    render = pipelined(eng, batches)
    lat: list[float] = []
    stop = threading.Event()

    def lane() -> None:
        period = 1 / 7
        nxt = time.perf_counter()
        while not stop.is_set():
            lat.append(feats())
            nxt += period
            time.sleep(max(0.0, nxt - time.perf_counter()))

    th = threading.Thread(target=lane)
    th.start()
    both = pipelined(eng, batches)
    stop.set()
    th.join()
    serial = render + alone * 7 * render  # old way: features between batches on one thread
    say(
        f"audio features, 3 s sentence: {alone * 1000:.1f} ms alone; render {n * b / render:.1f}"
        f" fps alone, {n * b / both:.1f} fps with 7 sentences/s on the audio lane (their "
        f"latency median {statistics.median(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms)"
        f"; on the render thread it would be about {n * b / serial:.1f} fps"
    )


def explore(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Compare compile variants of the full path at one batch size; then the mask-window
    decode's quality for several margins (eager)."""
    t_start = time.perf_counter()
    device = torch.device(args.device)
    quick = args.quick
    arch = official_arch() if args.arch == "official" else tiny_arch()
    width, height = (int(v) for v in args.size.lower().split("x"))
    models = build_models(arch)
    avatar = synthetic_avatar(4 if quick else 50, width, height)
    b = 4 if quick else max(int(v) for v in args.batches.split(","))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    say(f"explore: {gpu} | torch {torch.__version__} | {arch.name} | batch {b}")
    say(
        f"{'variant':<11} {'compile s':>9} {'unet ms':>8} {'decode ms':>9} {'blend ms':>8} "
        f"{'sync ms':>8} {'pipe ms':>8} {'pipe fps':>9} {'max|d| vs 1st':>14}"
    )
    windows: torch.Tensor | None = None
    first: torch.Tensor | None = None
    reps = 2 if quick else 6
    for name in args.explore.split(","):
        if time.perf_counter() - t_start > args.explore_budget:
            say(f"{name}: skipped (time budget)")
            continue
        eng: MuseTalkEngine | None = None
        try:
            opts = EngineOptions(
                device=str(device),
                compile=device.type == "cuda" and not args.no_compile,
                max_batch=b,
                **VARIANTS[name],  # type: ignore[arg-type]
            )
            eng = MuseTalkEngine(models, opts)
            eng.add_avatar(avatar)
            if windows is None:
                windows = windows_for_audio(eng.audio, speech_like(8.0, seed=1))
            jobs = jobs_for(eng, windows, b)
            t0 = time.perf_counter()
            with torch.inference_mode():
                lat = eng.predict_latents(jobs)
                faces = eng.decode_faces(jobs, lat, "full")
                eng.run_batch(jobs)
            sync(device)
            compile_s = time.perf_counter() - t0
            diff = 0.0 if first is None else float((faces.float() - first).abs().max())
            if first is None:
                first = faces.float()

            def unet(e: MuseTalkEngine = eng, j: list[FrameJob] = jobs) -> object:
                return e.predict_latents(j)

            def decode(
                e: MuseTalkEngine = eng, j: list[FrameJob] = jobs, x: torch.Tensor = lat
            ) -> object:
                return e.decode_faces(j, x, "full")

            def blend(
                e: MuseTalkEngine = eng, j: list[FrameJob] = jobs, f: torch.Tensor = faces
            ) -> object:
                return e.blend(j, f)

            def whole(e: MuseTalkEngine = eng, j: list[FrameJob] = jobs) -> object:
                return e.run_batch(j)

            t_unet, t_dec, t_blend, t_sync = (
                time_call(fn, device, reps) * 1000 for fn in (unet, decode, blend, whole)
            )
            n = 3 if quick else 10
            batches = [jobs_for(eng, windows, b, k * b) for k in range(n)]
            pipelined(eng, batches[:2])
            t_pipe = pipelined(eng, batches) / n * 1000
            say(
                f"{name:<11} {compile_s:>9.0f} {t_unet:>8.1f} {t_dec:>9.1f} {t_blend:>8.1f} "
                f"{t_sync:>8.1f} {t_pipe:>8.1f} {b / t_pipe * 1000:>9.1f} {diff:>14.4f}"
            )
            if name == args.explore.split(",")[0]:
                audio_overlap(say, eng, windows, b, quick)
        except Exception as exc:  # a variant that fails to compile is a result, not the end
            say(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            del eng
            torch._dynamo.reset()
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    # mask-window quality against the full decode for several margins (eager, fp16 on CUDA)
    eng = MuseTalkEngine(models, EngineOptions(device=str(device)))
    eng.add_avatar(avatar)
    assert windows is not None
    qb = 4 if quick else 32
    qjobs = jobs_for(eng, windows, qb, 7)
    boxes = [tuple(int(v) for v in avatar.crop_boxes[j.index]) for j in qjobs]

    def regions(frames: list[np.ndarray]) -> np.ndarray:
        cut = [f[y0:y1, x0:x1].ravel() for f, (x0, y0, x1, y1) in zip(frames, boxes, strict=True)]
        return np.concatenate(cut)

    with torch.inference_mode():
        lat = eng.predict_latents(qjobs)
        full = regions(eng.blend(qjobs, eng.decode_faces(qjobs, lat, "full")))
        g_full = gflop(lambda: eng.decode_faces(qjobs[:4], lat[:4], "full"), 4)
        for m in (2, 3, 4, 6, 8):
            eng.options = dataclasses.replace(eng.options, margin_rows=m)
            part = regions(eng.blend(qjobs, eng.decode_faces(qjobs, lat, "mask")))
            g = gflop(lambda: eng.decode_faces(qjobs[:4], lat[:4], "mask"), 4)
            r0, c0, c1 = eng.decode_window(qjobs)
            say(
                f"mask window, margin {m} rows: latent rows {r0}-31 cols "
                f"{c0}-{c1 - 1}, decode "
                f"{g:.1f} of {g_full:.1f} GFLOP/frame, PSNR vs full {psnr(full, part):.2f} dB"
            )
    say(f"explore took {time.perf_counter() - t_start:.0f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arch", choices=["official", "tiny"], default="official")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", default="1280x720", help="avatar frame WxH")
    ap.add_argument(
        "--batches",
        default="64",
        help="our batch sizes to time; with the default static compilation only the largest "
        "(every batch is padded to it)",
    )
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--dynamic", action="store_true", help="compile with a dynamic batch")
    ap.add_argument("--quick", action="store_true", help="tiny numbers, for a smoke test")
    ap.add_argument("--load-seconds", type=float, default=6.0)
    ap.add_argument("--out", type=Path, help="also write the report here")
    ap.add_argument(
        "--explore",
        metavar="VARIANTS",
        help=f"compare compile variants of the full path instead ({','.join(VARIANTS)})",
    )
    ap.add_argument("--explore-budget", type=float, default=420.0, help="seconds for variants")
    ap.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=True, help="ours"
    )
    ap.add_argument("--decode-inductor", choices=["tuned", "default"], default="tuned")
    ap.add_argument("--margin-rows", type=int, default=EngineOptions().margin_rows)
    ap.add_argument(
        "--time-budget", type=float, default=560.0, help="no new load trial after this (s)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved reference/ours rounds")
    ap.add_argument(
        "--cudnn-limit",
        type=int,
        default=None,
        help="torch.backends.cudnn.benchmark_limit for both paths (0: time every algorithm)",
    )
    ap.add_argument(
        "--extras",
        action="store_true",
        help="also: a fresh thread's first batch (cuDNN tunes again), kernel-time profiles",
    )
    ap.add_argument("--extra-batch", type=int, default=0, help="also time this static batch")
    ap.add_argument("--cudnn-zero", action="store_true", help="also: cuDNN benchmark_limit 10 vs 0")
    ap.add_argument(
        "--repeat-calls", type=int, default=0, help="after the search, this many calls twice more"
    )
    ap.add_argument("--cache-in", type=Path, help="load torch.compile artifacts from here")
    ap.add_argument("--cache-out", type=Path, help="save torch.compile artifacts here")
    args = ap.parse_args()
    device = torch.device(args.device)
    width, height = (int(v) for v in args.size.lower().split("x"))
    quick = args.quick
    lines: list[str] = []

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)
        if args.out:  # written as it goes, so a run cut short still leaves its table
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines) + "\n")

    if args.explore:
        return explore(args, say)
    t_begin = time.perf_counter()
    cache_note = (
        "inductor cache warm from an earlier process" if inductor_cache_warm() else "cold cache"
    )
    arch = official_arch() if args.arch == "official" else tiny_arch()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    tflops = dense_tflops(device, quick)
    log(f"dense matmul {tflops:.0f} TFLOP/s; building {arch.name}")
    models = build_models(arch)
    avatar = synthetic_avatar(4 if quick else 50, width, height)
    compile_ = not args.no_compile and device.type == "cuda"
    # the reference runs NCHW, as MuseTalk does
    cache_loaded = load_compile_cache(args.cache_in)
    if cache_loaded:
        log(cache_loaded)
    ref_opts = EngineOptions(
        device=str(device),
        compile=False,
        channels_last=False,
        margin_rows=args.margin_rows,
        cudnn_benchmark_limit=args.cudnn_limit,
    )
    ref = MuseTalkEngine(models, ref_opts)
    sizes = [2, 4] if quick else [int(b) for b in args.batches.split(",")]
    if compile_ and not args.dynamic:
        sizes = [max(sizes)]  # one static graph; smaller batches are padded to it
    ref.add_avatar(avatar)
    windows = windows_for_audio(ref.audio, speech_like(2.0 if quick else 8.0, seed=1))

    j4 = jobs_for(ref, windows, 4)
    with torch.inference_mode():
        lat4 = ref.predict_latents(j4)
    g_unet = gflop(lambda: ref.predict_latents(j4), 4)
    g_full = gflop(lambda: ref.decode_faces(j4, lat4, "full"), 4)
    g_mask = gflop(lambda: ref.decode_faces(j4, lat4, "mask"), 4)
    r0, c0, c1 = ref.decode_window(j4)
    log(f"GFLOP/frame unet {g_unet:.1f} full {g_full:.1f} mask {g_mask:.1f}")

    ref_batch, ref_n = (4, 3) if quick else (20, 15)
    decode_inductor = dict(TUNED_INDUCTOR) if args.decode_inductor == "tuned" else {}
    # ours gets its own copy of the weights: moving them to channels-last happens in place,
    # and the reference must keep running on NCHW weights as MuseTalk does
    ours = MuseTalkEngine(
        copy.deepcopy(models),
        EngineOptions(
            device=str(device),
            compile=compile_,
            dynamic_batch=args.dynamic,
            max_batch=max(sizes),
            channels_last=args.channels_last,
            decode_inductor=decode_inductor,
            margin_rows=args.margin_rows,
            cudnn_benchmark_limit=args.cudnn_limit,
        ),
    )
    ours.add_avatar(avatar)
    layout = "channels-last" if args.channels_last else "NCHW"
    tuning = ", ".join(f"{k}={v}" for k, v in decode_inductor.items()) or "defaults"
    say_later = f"ours: {layout}; inductor defaults for the UNet, for the decoder {tuning}"
    if not compile_:
        say_later = f"ours: {layout}, not compiled"

    t0 = time.perf_counter()
    ours.warmup()  # compiles (full decode) and sizes the batch from free memory
    sync(device)
    compile_full = time.perf_counter() - t0
    sizes = [b for b in sizes if b <= ours.options.max_batch] or [ours.options.max_batch]
    with torch.inference_mode():
        for b in sorted({max(2, min(sizes)), max(sizes)}):  # compile the mask-window graph
            wjobs = jobs_for(ours, windows, b)
            ours.decode_faces(wjobs, ours.predict_latents(wjobs), "mask")
    ours.configure(decode="mask")
    ours.capture_graphs()  # the full-decode one was captured by warmup()
    ours.configure(decode="full")
    sync(device)
    compile_s = time.perf_counter() - t0
    log(f"warm-up/compile {compile_s:.0f} s; memory-based max batch {ours.max_batch_size()}")

    cache_saved = save_compile_cache(args.cache_out)
    if cache_saved:
        log(cache_saved)

    latency: dict[tuple[str, int], float] = {}
    for mode in ("full", "mask"):
        ours.configure(decode=mode)  # type: ignore[arg-type]
        for b in sizes:
            jobs = jobs_for(ours, windows, b, 3)

            def step(jobs: list[FrameJob] = jobs) -> None:
                ours.run_batch(jobs)

            latency[(mode, b)] = time_call(step, device, 2 if quick else 4)
    gcp = GcPauses()
    # the reference and ours in turns (frames/s drift with clocks and the host's load): the
    # table gives each one's median over the rounds
    rounds = 1 if quick else args.rounds
    n = 3 if quick else 12
    ref_runs: list[tuple[float, float, list[np.ndarray]]] = []
    runs: dict[tuple[str, int], list[float]] = {}
    no_graph: list[float] = []
    for _ in range(rounds):
        ref_runs.append(reference_path(ref, avatar, windows, ref_batch, ref_n))
        log(f"reference {ref_runs[-1][0]:.1f} fps")
        for mode in ("full", "mask"):
            ours.configure(decode=mode)  # type: ignore[arg-type]
            for b in sizes:
                fps = throughput(ours, windows, b, n)
                runs.setdefault((mode, b), []).append(fps)
                log(f"ours {mode} b={b}: {fps:.1f} fps")
        if compile_ and not args.dynamic:  # the same without the CUDA graph
            ours.configure(decode="full", cuda_graphs=False)
            b = max(sizes)
            fps = throughput(ours, windows, b, n)
            no_graph.append(fps)
            log(f"ours full b={b} without the CUDA graph: {fps:.1f} fps")
            ours.configure(cuda_graphs=True)
    ours.configure(decode="full")
    ref_fps = statistics.median(r[0] for r in ref_runs)
    ref_ms = statistics.median(r[1] for r in ref_runs)
    ref_frames = ref_runs[0][2]
    results = {k: b / statistics.median(v) for k, v in runs.items() for b in [k[1]]}

    # quality: window decode vs full decode, and our GPU blend vs the CPU blend, same frames
    # the first ref_batch jobs are the reference's first timed batch
    qjobs = jobs_for(ours, windows, max(sizes), ref_batch)
    with torch.inference_mode():
        lat = ours.predict_latents(qjobs)
        full = ours.blend(qjobs, ours.decode_faces(qjobs, lat, "full"))
        part = ours.blend(qjobs, ours.decode_faces(qjobs, lat, "mask"))
    boxes = [tuple(int(v) for v in avatar.crop_boxes[j.index]) for j in qjobs]

    def regions(frames: list[np.ndarray]) -> np.ndarray:
        cut = [f[y0:y1, x0:x1].ravel() for f, (x0, y0, x1, y1) in zip(frames, boxes, strict=False)]
        return np.concatenate(cut)

    q_mask = psnr(regions(full), regions(part))
    graph_diff = None
    if compile_ and not args.dynamic:  # the CUDA graph replays the compiled kernels: same
        gjobs = jobs_for(ours, windows, max(sizes), 5)
        with torch.inference_mode():
            replayed = ours.faces(gjobs).clone()
            ours.configure(cuda_graphs=False)
            launched = ours.faces(gjobs)
            ours.configure(cuda_graphs=True)
        graph_diff = float((replayed.float() - launched.float()).abs().max())
    nref = min(ref_batch, len(qjobs))
    q_blend = psnr(regions(ref_frames[:nref]), regions(full[:nref]))
    maxdiff = int(np.abs(regions(full).astype(int) - regions(part).astype(int)).max())

    def row(name: str, batch: int, sec: float, g: float) -> str:
        fps = batch / sec
        share = fps * g / 1000 / tflops * 100
        return (
            f"{name:<56} {batch:>5} {sec * 1000:>9.1f} {fps:>9.1f} {g:>11.1f} "
            f"{share:>7.1f}% {fps / ref_fps:>6.2f}x"
        )

    say(f"GPU: {gpu} | torch {torch.__version__} | {arch.name}, random weights")
    say(f"avatar {width}x{height}, {avatar.num_frames} frames; frames returned at full size")
    say(f"measured dense fp16 matmul: {tflops:.0f} TFLOP/s (8192^3)")
    say(say_later)
    say(
        f"GFLOP per frame: UNet {g_unet:.1f}, VAE decode full {g_full:.1f}, VAE decode of the "
        f"mask window {g_mask:.1f} (latent rows {r0}-31, cols {c0}-{c1 - 1})"
    )
    say(
        f"warm-up incl. torch.compile: {compile_s:.0f} s (full-decode graphs {compile_full:.0f}"
        f" s; once per process, before any call; {cache_note}); memory-based batch cap "
        f"{ours.max_batch_size()}"
    )
    say("")
    head = f"{'path':<56} {'batch':>5} {'ms/batch':>9} {'frames/s':>9} {'GFLOP/frame':>11}"
    say(f"{head} {'%dense':>8} {'vs (a)':>7}")
    ref_label = "(a) reference: eager fp16, full decode, CPU blend"
    say(
        row(ref_label, ref_batch, ref_batch / ref_fps, g_unet + g_full) + f"  ({ref_ms:.1f} ms GPU)"
    )
    best: dict[str, tuple[float, int]] = {}
    kind = "compiled fp16" if compile_ else "eager"
    for mode, g in (("full", g_unet + g_full), ("mask", g_unet + g_mask)):
        what = "full decode" if mode == "full" else "mask-window decode"
        kind = kind if args.dynamic or not compile_ else "compiled fp16 (static)"
        lat_ms = ", ".join(f"{latency[(mode, b)] * 1000:.1f}" for b in sizes)
        for b in sizes:
            say(
                row(
                    f"(b) ours: {kind}, {what}, GPU blend" if b == sizes[0] else "",
                    b,
                    results[(mode, b)],
                    g,
                )
            )
            fps = b / results[(mode, b)]
            if fps > best.get(mode, (0.0, 0))[0]:
                best[mode] = (fps, b)
        say(f"{'':<56} one batch alone, submit to frames on the host: {lat_ms} ms")
    say("(b) rows: batches back to back as the scheduler runs them (next batch queued once")
    say("    the last is computed; its frames cross to the host meanwhile on a copy stream)")
    say("")
    say(
        f"quality, mask-window vs full decode (blended frames, crop boxes; {args.margin_rows} "
        f"latent rows of margin): PSNR {q_mask:.1f} dB, max |diff| {maxdiff}/255"
    )
    say(f"quality, our GPU blend vs the reference CPU blend (same frames): PSNR {q_blend:.1f} dB")
    if graph_diff is not None:
        say(
            "exactness, full decode replayed as a CUDA graph vs the same compiled kernels "
            f"launched one by one: max |diff| {graph_diff:g}"
        )
    mode = "mask" if q_mask >= 30.0 else "full"
    say(
        f"ratio ours/reference frames/s: full decode {best['full'][0] / ref_fps:.2f}x, "
        f"mask-window decode {best['mask'][0] / ref_fps:.2f}x"
    )
    say(
        f"interleaved rounds (frames/s): reference {', '.join(f'{r[0]:.1f}' for r in ref_runs)}"
        + "".join(
            f"; ours {m} b={b} {', '.join(f'{v:.1f}' for v in runs[(m, b)])}" for m, b in runs
        )
        + (
            f"; ours full b={max(sizes)} without the CUDA graph (compiled kernels launched one "
            f"by one) {', '.join(f'{v:.1f}' for v in no_graph)}"
            if no_graph
            else ""
        )
    )
    say("")
    seconds = 1.0 if quick else args.load_seconds
    deadline = t_begin + args.time_budget
    load_test(
        say,
        ours,
        mode,
        best[mode],
        q_mask,
        seconds,
        quick,
        windows,
        gcp,
        deadline,
        repeat_calls=args.repeat_calls,
    )

    def left() -> float:
        return args.time_budget - (time.perf_counter() - t_begin)

    if args.extras and not quick:
        say("")
        b = max(sizes)
        ours.configure(decode="full", max_batch=b, cuda_graphs=False)
        main_s, first_s, second_s = fresh_thread_batches(ours, windows, b)
        ours.configure(cuda_graphs=True)
        say(
            f"first-time cost (without the CUDA graph): a batch of {b} takes "
            f"{main_s * 1000:.0f} ms on the thread that was warmed, {first_s * 1000:.0f} ms as a "
            f"fresh thread's first batch (cuDNN tunes every convolution again: its plans are "
            f"per thread), then {second_s * 1000:.0f} ms"
        )
        for m in ("full", "mask"):
            ours.configure(decode=m)  # type: ignore[arg-type]
            kernel_profile(say, ours, jobs_for(ours, windows, b))
        ours.configure(decode="full")
    if args.extra_batch and compile_ and not quick:
        extra_batch(say, args, ours.models, avatar, ref, windows, ref_fps, left())
    if args.cudnn_zero and not quick:
        if left() > 60:
            cudnn_limit_zero(say, ref, ours, avatar, windows, max(sizes))
        else:
            say(f"cuDNN benchmark_limit 0: skipped ({left():.0f} s of the time budget left)")
    return 0


def extra_batch(
    say: Callable[[str], None],
    args: argparse.Namespace,
    models: MuseTalkModels,
    avatar: PreparedAvatar,
    ref: MuseTalkEngine,
    windows: torch.Tensor,
    ref_fps: float,
    left: float,
) -> None:
    """Our full path compiled for a larger static batch, against the reference again."""
    if left < 200:
        say(f"batch {args.extra_batch}: skipped ({left:.0f} s of the time budget left)")
        return
    decode_inductor = dict(TUNED_INDUCTOR) if args.decode_inductor == "tuned" else {}
    eng = MuseTalkEngine(
        models,  # ours' (channels-last) weights
        EngineOptions(
            device=args.device,
            compile=True,
            max_batch=args.extra_batch,
            channels_last=args.channels_last,
            decode_inductor=decode_inductor,
            cudnn_benchmark_limit=args.cudnn_limit,
        ),
    )
    eng.add_avatar(avatar)
    t0 = time.perf_counter()
    eng.warmup()
    compile_s = time.perf_counter() - t0
    b = eng.options.max_batch
    fps = [throughput(eng, windows, b, 8) for _ in range(2)]
    ref2 = reference_path(ref, avatar, windows, 20, 15)[0]
    say(
        f"batch {b}, full decode: {', '.join(f'{v:.1f}' for v in fps)} fps (compile "
        f"{compile_s:.0f} s); reference again {ref2:.1f} fps; ratio "
        f"{max(fps) / ref_fps:.2f}x to the table's reference, {max(fps) / ref2:.2f}x to this one"
    )


if __name__ == "__main__":
    sys.exit(main())
