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
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from render_bench.compare import compare  # noqa: E402
from render_bench.explore import VARIANTS, explore  # noqa: E402

from inference.render.musetalk import EngineOptions  # noqa: E402


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
    lines: list[str] = []

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)
        if args.out:  # written as it goes, so a run cut short still leaves its table
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines) + "\n")

    if args.explore:
        return explore(args, say)
    return compare(args, say)


if __name__ == "__main__":
    sys.exit(main())
