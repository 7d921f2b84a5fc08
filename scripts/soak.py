"""Soak: N connect / talk / hang-up cycles against an in-process server; prints growth.

    python scripts/soak.py                       # 100 cycles, fake ASR/dialogue/TTS + warp
    python scripts/soak.py --backend embedded    # the embedded defaults (whisper, FAQ, piper)
    python scripts/soak.py --cycles 300 --full-reply --json soak.json

Server and callers share this process, so RSS, open file descriptors, threads and asyncio
tasks cover both sides. The baseline is taken after ``--warmup`` cycles (thread pools and
codec caches fill up first). The exit status is 1 when the growth over the second half of
the run (the steady state) passes a limit; the growth from the baseline is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import AvatarStore
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.client.loadgen import soak
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services, WarpRendererFactory, load_services


def fake_services(avatars: Path) -> Services:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("What are your opening hours?",))),
        dialogue=ScriptedDialogue(
            ScriptedDialogueOptions(
                replies=("We are open from nine to five.",), greeting_text="Hi."
            )
        ),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(avatars),
        renderers=WarpRendererFactory(WarpOptions()),
    )
    services.avatar("astronaut")
    return services


async def run(args: argparse.Namespace) -> tuple[dict[str, object], list[dict[str, float]]]:
    avatars = Path(args.avatars_dir or tempfile.mkdtemp(prefix="soak-avatars-"))
    settings = Settings(  # one caller hammers from 127.0.0.1: lift the per-IP request limit
        host="127.0.0.1",
        port=0,
        render={"avatars_dir": avatars},
        cache={"dir": None},
        access={"requests_per_s": 1000, "request_burst": 1000},
    )
    if args.backend == "fake":
        services = await asyncio.to_thread(fake_services, avatars)
    else:
        services = await load_services(settings)
    app = create_app(settings, services=services)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    state = app[STATE]

    def progress(i: int, s: dict[str, float]) -> None:
        if i % 10 == 0 or i == args.cycles:
            print(
                f"cycle {i:4d}: rss {s['rss_mb']:.1f} MiB, fds {s['fds']:.0f}, "
                f"threads {s['threads']:.0f}, tasks {s['tasks']:.0f}",
                flush=True,
            )

    try:
        samples = await soak(
            url,
            args.cycles,
            full_reply=args.full_reply,
            active=lambda: len(state.sessions),
            on_cycle=progress,
        )
    finally:
        await server.close()
    base, last = samples[min(args.warmup, len(samples) - 1)], samples[-1]
    mid = samples[(min(args.warmup, len(samples) - 1) + len(samples) - 1) // 2]
    growth = {k: round(last[k] - base[k], 2) for k in base}
    # Steady state: the second half of the run. Native allocators (codec contexts, one
    # malloc arena per executor thread) settle during the first half; a leak keeps growing.
    tail_growth = {k: round(last[k] - mid[k], 2) for k in base}
    limits = {
        "rss_mb": args.max_rss_growth_mb,
        "fds": args.max_fd_growth,
        "threads": args.max_thread_growth,
        "pool_threads": args.max_thread_growth,
        "tasks": args.max_task_growth,
    }
    ok = all(tail_growth[k] <= limits[k] for k in limits)
    result: dict[str, object] = {
        "cycles": args.cycles,
        "backend": args.backend,
        "warmup": args.warmup,
        "baseline": base,
        "midpoint": mid,
        "final": last,
        "growth": growth,
        "second_half_growth": tail_growth,
        "limits_second_half": limits,
        "ok": ok,
    }
    print(json.dumps(result, indent=2))
    return result, samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5, help="cycles before the baseline")
    p.add_argument("--backend", choices=["fake", "embedded"], default="fake")
    p.add_argument("--full-reply", action="store_true", help="hear each reply to its end")
    p.add_argument("--avatars-dir", type=Path)
    p.add_argument("--max-rss-growth-mb", type=float, default=20.0, help="second half")
    p.add_argument("--max-fd-growth", type=float, default=2, help="second half")
    p.add_argument("--max-thread-growth", type=float, default=1, help="second half")
    p.add_argument("--max-task-growth", type=float, default=1, help="second half")
    p.add_argument("--json", type=Path, help="write the result and every sample here")
    args = p.parse_args()
    if args.cycles < 1 or args.warmup < 0:
        p.error("--cycles must be >= 1 and --warmup >= 0")
    result, samples = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps({**result, "samples": samples}, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
