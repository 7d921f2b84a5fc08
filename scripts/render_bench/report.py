"""The comparison's report: the setup, the table of (a) against (b), quality and the
interleaved rounds, from the numbers ``compare`` measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """What ``compare`` measured, for the report. ``results`` and ``latency`` are seconds
    per batch by (decode mode, batch size); ``runs`` frames/s of each round."""

    gpu: str
    arch: str
    width: int
    height: int
    frames: int  # the avatar's
    tflops: float
    setup: str  # our path's layout and compile settings
    g_unet: float
    g_full: float
    g_mask: float
    window: tuple[int, int, int]  # the mask-window decode's first latent row, columns
    compile_s: float
    compile_full: float
    cache_note: str
    batch_cap: int
    ref_batch: int
    ref_fps: float
    ref_ms: float
    ref_runs: list[float]  # frames/s of each round
    compiled: bool
    dynamic: bool
    sizes: list[int]
    latency: dict[tuple[str, int], float]
    results: dict[tuple[str, int], float]
    runs: dict[tuple[str, int], list[float]]
    no_graph: list[float]
    margin_rows: int
    q_mask: float
    maxdiff: int
    q_blend: float
    graph_diff: float | None


def best_batches(
    results: dict[tuple[str, int], float], sizes: list[int]
) -> dict[str, tuple[float, int]]:
    """Each decode mode's highest frames/s and the batch size that gave it."""
    best: dict[str, tuple[float, int]] = {}
    for mode in ("full", "mask"):
        for b in sizes:
            fps = b / results[(mode, b)]
            if fps > best.get(mode, (0.0, 0))[0]:
                best[mode] = (fps, b)
    return best


def report(say: Callable[[str], None], res: Measured) -> None:
    """Print the setup, the table, quality, the ratios and the interleaved rounds."""
    best = best_batches(res.results, res.sizes)
    ref_fps = res.ref_fps
    sizes = res.sizes

    def row(name: str, batch: int, sec: float, g: float) -> str:
        fps = batch / sec
        share = fps * g / 1000 / res.tflops * 100
        return (
            f"{name:<56} {batch:>5} {sec * 1000:>9.1f} {fps:>9.1f} {g:>11.1f} "
            f"{share:>7.1f}% {fps / ref_fps:>6.2f}x"
        )

    g_unet, g_full, g_mask = res.g_unet, res.g_full, res.g_mask
    r0, c0, c1 = res.window
    say(f"GPU: {res.gpu} | torch {torch.__version__} | {res.arch}, random weights")
    say(f"avatar {res.width}x{res.height}, {res.frames} frames; frames returned at full size")
    say(f"measured dense fp16 matmul: {res.tflops:.0f} TFLOP/s (8192^3)")
    say(res.setup)
    say(
        f"GFLOP per frame: UNet {g_unet:.1f}, VAE decode full {g_full:.1f}, VAE decode of the "
        f"mask window {g_mask:.1f} (latent rows {r0}-31, cols {c0}-{c1 - 1})"
    )
    say(
        f"warm-up incl. torch.compile: {res.compile_s:.0f} s (full-decode graphs "
        f"{res.compile_full:.0f} s; once per process, before any call; {res.cache_note}); "
        f"memory-based batch cap {res.batch_cap}"
    )
    say("")
    head = f"{'path':<56} {'batch':>5} {'ms/batch':>9} {'frames/s':>9} {'GFLOP/frame':>11}"
    say(f"{head} {'%dense':>8} {'vs (a)':>7}")
    ref_label = "(a) reference: eager fp16, full decode, CPU blend"
    say(
        row(ref_label, res.ref_batch, res.ref_batch / ref_fps, g_unet + g_full)
        + f"  ({res.ref_ms:.1f} ms GPU)"
    )
    kind = "compiled fp16" if res.compiled else "eager"
    for mode, g in (("full", g_unet + g_full), ("mask", g_unet + g_mask)):
        what = "full decode" if mode == "full" else "mask-window decode"
        kind = kind if res.dynamic or not res.compiled else "compiled fp16 (static)"
        lat_ms = ", ".join(f"{res.latency[(mode, b)] * 1000:.1f}" for b in sizes)
        for b in sizes:
            say(
                row(
                    f"(b) ours: {kind}, {what}, GPU blend" if b == sizes[0] else "",
                    b,
                    res.results[(mode, b)],
                    g,
                )
            )
        say(f"{'':<56} one batch alone, submit to frames on the host: {lat_ms} ms")
    say("(b) rows: batches back to back as the scheduler runs them (next batch queued once")
    say("    the last is computed; its frames cross to the host meanwhile on a copy stream)")
    say("")
    say(
        f"quality, mask-window vs full decode (blended frames, crop boxes; {res.margin_rows} "
        f"latent rows of margin): PSNR {res.q_mask:.1f} dB, max |diff| {res.maxdiff}/255"
    )
    say(
        "quality, our GPU blend vs the reference CPU blend (same frames): "
        f"PSNR {res.q_blend:.1f} dB"
    )
    if res.graph_diff is not None:
        say(
            "exactness, full decode replayed as a CUDA graph vs the same compiled kernels "
            f"launched one by one: max |diff| {res.graph_diff:g}"
        )
    say(
        f"ratio ours/reference frames/s: full decode {best['full'][0] / ref_fps:.2f}x, "
        f"mask-window decode {best['mask'][0] / ref_fps:.2f}x"
    )
    runs, no_graph = res.runs, res.no_graph
    say(
        f"interleaved rounds (frames/s): reference {', '.join(f'{r:.1f}' for r in res.ref_runs)}"
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
