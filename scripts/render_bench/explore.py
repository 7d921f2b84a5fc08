"""``--explore``: compile variants of the full path, the audio lane's overlap with
rendering, and the mask-window decode's quality for several margins."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

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
    gflop,
    jobs_for,
    psnr,
    speech_like,
    sync,
    synthetic_avatar,
    time_call,
)
from render_bench.paths import pipelined

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
