"""The comparison (the benchmark without ``--explore``): (a) the reference-style path and
(b) ours timed in turns, FLOPs, quality, the report; then the load test and the extras."""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

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
from inference.render.musetalk.engine import TUNED_INDUCTOR
from render_bench.common import (
    dense_tflops,
    gflop,
    jobs_for,
    log,
    psnr,
    speech_like,
    sync,
    synthetic_avatar,
    time_call,
)
from render_bench.compile_cache import inductor_cache_warm, load_compile_cache, save_compile_cache
from render_bench.extras import cudnn_limit_zero, extra_batch, fresh_thread_batches, kernel_profile
from render_bench.load_test import GcPauses, load_test
from render_bench.paths import reference_path, throughput
from render_bench.report import Measured, best_batches, report


def compare(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """(a) and (b) in turns, each one's median in the table; then the load test at the
    better decode's best batch, and what ``--extras``, ``--extra-batch``, ``--cudnn-zero``
    ask for."""
    device = torch.device(args.device)
    width, height = (int(v) for v in args.size.lower().split("x"))
    quick = args.quick
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
    q_mask, q_blend, maxdiff, graph_diff = quality(
        ours, avatar, windows, sizes, ref_batch, ref_frames, graph=compile_ and not args.dynamic
    )
    best = best_batches(results, sizes)
    report(
        say,
        Measured(
            gpu=gpu,
            arch=arch.name,
            width=width,
            height=height,
            frames=avatar.num_frames,
            tflops=tflops,
            setup=say_later,
            g_unet=g_unet,
            g_full=g_full,
            g_mask=g_mask,
            window=(r0, c0, c1),
            compile_s=compile_s,
            compile_full=compile_full,
            cache_note=cache_note,
            batch_cap=ours.max_batch_size(),
            ref_batch=ref_batch,
            ref_fps=ref_fps,
            ref_ms=ref_ms,
            ref_runs=[r[0] for r in ref_runs],
            compiled=compile_,
            dynamic=args.dynamic,
            sizes=sizes,
            latency=latency,
            results=results,
            runs=runs,
            no_graph=no_graph,
            margin_rows=args.margin_rows,
            q_mask=q_mask,
            maxdiff=maxdiff,
            q_blend=q_blend,
            graph_diff=graph_diff,
        ),
    )
    mode = "mask" if q_mask >= 30.0 else "full"
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


def quality(
    ours: MuseTalkEngine,
    avatar: PreparedAvatar,
    windows: torch.Tensor,
    sizes: list[int],
    ref_batch: int,
    ref_frames: list[np.ndarray],
    *,
    graph: bool,
) -> tuple[float, float, int, float | None]:
    """PSNR of the mask-window decode against the full decode and of our GPU blend against
    the reference's CPU blend (same frames, in the crop boxes), the largest difference
    between the two decodes, and (``graph``: a static compiled engine) the largest
    difference between the CUDA graph's replay and its kernels launched one by one."""
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
    if graph:  # the CUDA graph replays the compiled kernels: same
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
    return q_mask, q_blend, maxdiff, graph_diff
