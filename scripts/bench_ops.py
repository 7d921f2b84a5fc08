"""Operations overhead: server CPU during calls with metrics + logging on, and with them off.

Spawns the real server twice in alternation (A: metrics on, JSON logs at info level, as in
production; B: ``--no-metrics --log-level warning``), runs the same spoken questions through
the recording bot against each, and prints the server's CPU % of one core while replying and
while idle, and the difference. Both setups run in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_call import QUESTIONS, CpuSampler, _windows, spawn_server, synthesize_questions

from signaling.client.bot import BotOptions, run_bot

SETUPS = {
    "on": ["--log-format", "json", "--log-level", "info"],
    "off": ["--no-metrics", "--log-level", "warning"],
}


async def _calls(url: str, pid: int, wavs: list[Path], timeout_s: float) -> tuple[list, list]:
    reply: list[float] = []
    idle: list[float] = []
    with CpuSampler(pid) as sampler:
        for wav in wavs:
            r = await run_bot(BotOptions(url=url, audio=wav, timeout_s=timeout_s, settle_s=3.0))
            replying, quiet = _windows(r)
            reply += [p for a, b in replying if (p := sampler.percent(a, b)) is not None]
            idle += [p for a, b in quiet if (p := sampler.percent(a, b)) is not None]
    return reply, idle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="alternations of on/off servers")
    p.add_argument("--calls", type=int, default=2, help="calls per server start")
    p.add_argument("--timeout-s", type=float, default=40.0)
    args = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="bench_ops_"))
    wavs = synthesize_questions([QUESTIONS[i % len(QUESTIONS)] for i in range(args.calls)], out)
    results: dict[str, dict[str, list[float]]] = {k: {"reply": [], "idle": []} for k in SETUPS}
    for rnd in range(args.rounds):
        for name, extra in SETUPS.items():
            with spawn_server(extra) as (url, pid):
                reply, idle = asyncio.run(_calls(url, pid, wavs, args.timeout_s))
            results[name]["reply"] += reply
            results[name]["idle"] += idle
            med_r = np.median(reply) if reply else float("nan")
            med_i = np.median(idle) if idle else float("nan")
            print(
                f"round {rnd + 1} {name:>3}: replying {med_r:.1f} %, idle {med_i:.1f} %", flush=True
            )
    print("\nserver CPU, % of one core (median; metrics+logging on vs off, same run)")
    for phase in ("reply", "idle"):
        on = float(np.median(results["on"][phase]))
        off = float(np.median(results["off"][phase]))
        rel = (on / off - 1) * 100 if off else float("nan")
        n = len(results["on"][phase])
        print(
            f"  {phase:>6}: on {on:6.1f}   off {off:6.1f}   "
            f"overhead {on - off:+5.1f} points ({rel:+.1f} %)  n={n}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
