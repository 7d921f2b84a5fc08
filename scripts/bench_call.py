"""Call benchmark: the recording bot asks spoken questions; prints latency, skew, barge-in, CPU.

    python scripts/bench_call.py --url http://127.0.0.1:8080 --n 5 --server-pid PID
    python scripts/bench_call.py --spawn-server --n 5

Each question is synthesized with the project's TTS (piper, joe voice; espeak-ng if piper is
unavailable) and asked by its own call; ``--barge-in N`` more calls interrupt the reply.
Prints median and p90 of reply_audio_latency_ms, reply_video_latency_ms, av_skew_ms,
barge_in_ms, and the server's CPU (% of one core) while replying and while idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signaling.client.bot import BotError, BotOptions, BotReport, run_bot
from tests.harness.spawn import spawn_server as serve

QUESTIONS = [
    "What are your opening hours?",
    "How long does shipping take?",
    "How can I return an item and get a refund?",
    "Which payment methods do you accept?",
    "How do I check the status of my order?",
    "Is there a warranty on electronics?",
    "Where is your nearest store?",
    "Can I talk to a human, please?",
]
INTERRUPTION = "Sorry, stop, I have another question."
METRICS = [
    "reply_audio_latency_ms",
    "reply_video_latency_ms",
    "av_skew_ms",
    "barge_in_ms",
    "barge_in_event_ms",
]


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


def synthesize_questions(texts: list[str], folder: Path) -> list[Path]:
    """One WAV per text: piper (the project's TTS) if it loads, else espeak-ng."""
    paths = [folder / f"q{i}.wav" for i in range(len(texts))]
    try:
        from inference.tts.piper_tts import PiperTts, PiperTtsOptions

        tts = PiperTts.load(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))
        for text, path in zip(texts, paths, strict=True):
            _write_wav(path, tts.synthesize_blocking(text), tts.sample_rate)
        return paths
    except (ImportError, OSError) as exc:
        print(f"piper unavailable ({exc}); using espeak-ng", file=sys.stderr)
    for text, path in zip(texts, paths, strict=True):
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return paths


class CpuSampler:
    """Samples a process's CPU seconds (utime+stime, all threads) from /proc every 100 ms."""

    def __init__(self, pid: int) -> None:
        self._stat = Path(f"/proc/{pid}/stat")
        if not self._stat.exists():
            raise ValueError(f"no process {pid}")
        self._tick = os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float:
        fields = self._stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), self._read()))
            self._stop.wait(0.1)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def percent(self, t0: float, t1: float) -> float | None:
        """Mean CPU % of one core over [t0, t1] (None if too short or not sampled)."""
        if t1 - t0 < 0.3 or len(self.samples) < 2:
            return None
        ts, cs = np.array(self.samples).T
        if t0 < ts[0] or t1 > ts[-1]:
            return None
        return float((np.interp(t1, ts, cs) - np.interp(t0, ts, cs)) / (t1 - t0) * 100.0)


def _windows(r: BotReport) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(replying, idle) intervals on the bot's monotonic clock, from its state events.

    Replying: each speaking → next state after the question went on air. Idle: from half a
    second after the greeting ended to just before the question (the bot's settle time).
    """
    if r.question_start_ms is None:
        return [], []
    t0 = r.t0_monotonic
    asked = t0 + r.question_start_ms / 1000
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for e in r.events:
        if e.get("type") != "state":
            continue
        t = t0 + e["t_ms"] / 1000
        if e["state"] == "speaking" and since is None:
            since = t
        elif e["state"] != "speaking" and since is not None:
            spans.append((since, t))
            since = None
    replying = [(a, b) for a, b in spans if a > asked]
    greeting_end = max((b for _, b in spans if b <= asked), default=None)
    idle = [] if greeting_end is None else [(greeting_end + 0.5, asked - 0.1)]
    return replying, idle


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    a = np.array(values)
    return f"median {np.median(a):8.1f}   p90 {np.percentile(a, 90):8.1f}   n={a.size}"


@contextlib.contextmanager
def spawn_server(extra: list[str], log: Path | None = None) -> Iterator[tuple[str, int]]:
    """Start ``avatar-rtc serve`` on a free loopback port; yield (url, pid) once ready.

    Its output goes to ``log`` (a kept temporary file if None), named when it starts."""
    with serve(args=extra, log=log, stop_timeout_s=10) as server:
        print(
            f"avatar-rtc serve (pid {server.pid}) at {server.url}; log {server.log}",
            file=sys.stderr,
        )
        yield server.url, server.pid


async def bench(
    url: str, n: int, barge_in: int, pid: int | None, out: Path, timeout_s: float
) -> dict[str, Any]:
    texts = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    wavs = synthesize_questions([*texts, INTERRUPTION], out)
    questions, stop = wavs[:-1], wavs[-1]
    reports: list[dict[str, Any]] = []
    cpu_reply: list[float] = []
    cpu_idle: list[float] = []
    sampler = CpuSampler(pid) if pid else None
    with sampler or contextlib.nullcontext():
        runs = [(q, None) for q in questions] + [(questions[i % n], stop) for i in range(barge_in)]
        for k, (q, interrupt) in enumerate(runs):
            options = BotOptions(
                url=url,
                audio=q,
                interrupt_audio=interrupt,
                record=out / f"call{k}.mp4",
                report=out / f"call{k}.json",
                timeout_s=timeout_s,
                settle_s=3.0,
            )
            try:
                r = await run_bot(options)
            except BotError as exc:
                print(f"call {k}: failed: {exc}", file=sys.stderr)
                continue
            reports.append(r.to_json())
            print(
                f"call {k}: heard {r.transcript!r} → {r.reply_text[:60]!r}  "
                + " ".join(f"{m}={getattr(r, m)}" for m in METRICS)
                + (f"  errors={r.errors}" if r.errors else "")
            )
            if sampler is not None:
                replying, idle = _windows(r)
                cpu_reply += [p for a, b in replying if (p := sampler.percent(a, b)) is not None]
                cpu_idle += [p for a, b in idle if (p := sampler.percent(a, b)) is not None]
    summary: dict[str, Any] = {}
    print(f"\n{len(reports)} calls against {url}")
    for m in METRICS:
        vals = [float(r[m]) for r in reports if r.get(m) is not None]
        summary[m] = vals
        print(f"{m:>24}: {_stats(vals)}")
    if sampler is not None:
        summary["cpu_replying_pct"] = cpu_reply
        summary["cpu_idle_pct"] = cpu_idle
        print(f"{'server CPU replying %':>24}: {_stats(cpu_reply)}")
        print(f"{'server CPU idle call %':>24}: {_stats(cpu_idle)}")
    (out / "summary.json").write_text(
        json.dumps({"reports": reports, "summary": summary}, indent=2)
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8080")
    where.add_argument("--spawn-server", action="store_true", help="start avatar-rtc serve here")
    p.add_argument("--serve-arg", action="append", default=[], help="extra serve argument")
    p.add_argument("--n", type=int, default=5, help="questions (one call each, >= 5)")
    p.add_argument("--barge-in", type=int, default=None, help="interrupted calls (default n)")
    p.add_argument("--server-pid", type=int, help="measure this process's CPU")
    p.add_argument("--timeout-s", type=float, default=30.0)
    p.add_argument("--out", type=Path, help="folder for WAVs, MP4s and reports (default: temp)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be >= 1")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_call_"))
    out.mkdir(parents=True, exist_ok=True)
    barge = args.n if args.barge_in is None else args.barge_in
    if args.spawn_server:
        with spawn_server(args.serve_arg, out / "server.log") as (url, pid):
            asyncio.run(bench(url, args.n, barge, pid, out, args.timeout_s))
    else:
        asyncio.run(bench(args.url, args.n, barge, args.server_pid, out, args.timeout_s))
    print(f"reports and recordings in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
