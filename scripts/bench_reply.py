"""Reply-latency benchmark: speech end → first reply audio at the bot, cache miss vs hit.

    python scripts/bench_reply.py                       # embedded defaults and fake LLM
    python scripts/bench_reply.py --only embedded --n 3
    python scripts/bench_reply.py --only llm --first-token-ms 300

For each setup it starts ``avatar-rtc serve --config FILE`` with a fresh cache folder
(preloading off, so the first round really misses), asks ``--n`` distinct spoken questions
(one call each: every reply is synthesized and rendered: cache misses), then asks the same
questions again (the replies come from the speech and clip caches: hits). Setups:

- ``embedded``: faster-whisper tiny.en, FAQ retrieval, piper, warp (the offline defaults);
- ``llm``: the same but dialogue from a fake OpenAI-compatible server in this process that
  waits ``--first-token-ms`` before streaming a reply word by word (the reply is the
  knowledge-base answer it finds in its prompt, so it differs per question and repeats).

Prints, per setup and round, median/p90 of the bot's ``reply_audio_latency_ms`` and of the
server's own stage marks (``asr_done``, ``first_sentence``, ``first_audio``, ``first_sent``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "inference"))

from bench_call import QUESTIONS, spawn_server, synthesize_questions  # noqa: E402
from fake_openai import FakeOpenAi  # noqa: E402

from signaling.client.bot import BotError, BotOptions, run_bot  # noqa: E402

STAGES = ["asr_done", "first_sentence", "first_audio", "first_frame", "first_sent"]
_ANSWER = re.compile(r"^\s*A: (.+)$", re.MULTILINE)


def llm_reply(messages: list[dict[str, str]]) -> str:
    """The fake LLM's answer: the first knowledge-base answer in its system prompt."""
    found = _ANSWER.search(messages[0]["content"])
    return found.group(1) if found else "Sorry, I can only help with store questions."


def write_config(folder: Path, setup: str, llm_url: str | None) -> Path:
    config: dict[str, Any] = {
        "cache": {"dir": str(folder / "cache"), "preload": False, "speculate": False},
    }
    if setup == "llm":
        assert llm_url is not None
        config["dialogue"] = {
            "backend": "openai",
            "service": {"base_url": llm_url, "model": "fake", "first_byte_timeout_s": 10},
        }
    path = folder / f"{setup}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    a = np.array(values)
    return f"median {np.median(a):7.0f}  p90 {np.percentile(a, 90):7.0f}  n={a.size}"


def _stage_marks(report: dict[str, Any]) -> dict[str, float]:
    """The server's timings of the question's turn (the last timings event of the call)."""
    marks: dict[str, float] = {}
    for event in report.get("events", []):
        if event.get("type") == "timings":
            marks = dict(event.get("stages", {}))
    return marks


async def run_setup(
    setup: str, n: int, wavs: list[Path], out: Path, first_token_s: float, timeout_s: float
) -> dict[str, Any]:
    fake = FakeOpenAi(reply=llm_reply, first_token_delay_s=first_token_s, token_delay_s=0.02)
    url = await fake.start() if setup == "llm" else None
    folder = out / setup
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, setup, url)
    results: dict[str, Any] = {}
    try:
        with spawn_server(["--config", str(config)]) as (server_url, _pid):
            for round_name in ("miss", "hit"):
                latencies: list[float] = []
                stages: dict[str, list[float]] = {s: [] for s in STAGES}
                for k, wav in enumerate(wavs[:n]):
                    options = BotOptions(
                        url=server_url,
                        audio=wav,
                        report=folder / f"{round_name}{k}.json",
                        timeout_s=timeout_s,
                        settle_s=1.5,
                    )
                    try:
                        report = (await run_bot(options)).to_json()
                    except BotError as exc:
                        print(f"{setup}/{round_name} call {k}: failed: {exc}", file=sys.stderr)
                        continue
                    lat = report.get("reply_audio_latency_ms")
                    marks = _stage_marks(report)
                    print(
                        f"{setup:>8}/{round_name}: {report.get('transcript')!r:45.45} "
                        f"reply_audio={lat} ms  server={marks}"
                    )
                    if lat is not None:
                        latencies.append(float(lat))
                    for s in STAGES:
                        if s in marks:
                            stages[s].append(float(marks[s]))
                results[round_name] = {"reply_audio_latency_ms": latencies, "stages": stages}
    finally:
        await fake.close()
    return results


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_reply_"))
    out.mkdir(parents=True, exist_ok=True)
    texts = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.n)]
    wavs = synthesize_questions(texts, out)
    setups = ["embedded", "llm"] if args.only is None else [args.only]
    summary: dict[str, Any] = {}
    for setup in setups:
        summary[setup] = await run_setup(
            setup, args.n, wavs, out, args.first_token_ms / 1000.0, args.timeout_s
        )
    print("\nreply latency, speech end → first reply audio at the bot (ms)")
    for setup, rounds in summary.items():
        label = setup if setup == "embedded" else f"llm (first token {args.first_token_ms:.0f} ms)"
        for round_name, data in rounds.items():
            print(f"  {label:>28} cache {round_name}: {_stats(data['reply_audio_latency_ms'])}")
            for stage in STAGES:
                print(f"  {'':>28}   server {stage:>15}: {_stats(data['stages'][stage])}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"reports in {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n", type=int, default=4, help="distinct questions per round (1..8)")
    p.add_argument("--only", choices=["embedded", "llm"], help="run one setup only")
    p.add_argument("--first-token-ms", type=float, default=300.0, help="fake LLM's delay")
    p.add_argument("--timeout-s", type=float, default=40.0, help="per call")
    p.add_argument("--out", type=Path, help="folder for WAVs, configs and reports")
    args = p.parse_args(argv)
    if not 1 <= args.n <= len(QUESTIONS):
        p.error(f"--n must be within 1..{len(QUESTIONS)}")
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
