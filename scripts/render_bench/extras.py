"""Optional measurements (``--extras``, ``--extra-batch``, ``--cudnn-zero``): a fresh
thread's first batch, kernel-time profiles, a larger static batch, cuDNN's benchmark_limit."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk import EngineOptions, FrameJob, MuseTalkEngine
from inference.render.musetalk.engine import TUNED_INDUCTOR
from inference.render.musetalk.model import MuseTalkModels
from render_bench.common import in_thread, jobs_for, sync
from render_bench.paths import reference_path, throughput


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
