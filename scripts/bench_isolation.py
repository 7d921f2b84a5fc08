"""Isolation: one well-behaved call asks questions while N-1 calls misbehave; its numbers
against the same call alone, measured in the same run.

    python scripts/bench_isolation.py --calls 4            # spawns `avatar-rtc serve`
    python scripts/bench_isolation.py --tiny               # smoke run: 2 calls, 1 round
    python scripts/bench_isolation.py --url http://127.0.0.1:8080 --calls 4

Each round the bystander (the recording bot, typing one question per call) is measured three
times: alone, beside N-1 quiet calls, and beside the same calls misbehaving: typed-text floods
(``--text-per-s``), bursts of mic noise the VAD takes for speech, and reconnect storms
(control-socket drops, every sixth a peer-connection resume), cycled over the calls (with
fewer calls than kinds, a call does several at once: every kind is always there). The
misbehaving calls live in a child process of this script at a lower CPU priority, so their
client work (decoding video) neither shares the bot's event loop nor takes the server's CPU.
Prints the bystander's video fps, A/V skew, reply latency and lip correlation, and the
server's CPU meanwhile (medians over the rounds) per condition, the ratios to alone, the
targets (>= 24 fps, skew within 40 ms of alone, latency within 1.2x of alone) and what the
misbehaving calls did. ``--json`` keeps every measurement with the server's stage marks.

The spawned server's cache is off by default (every reply is synthesized and rendered anew, as
with an LLM); ``--cache fresh`` gives it an empty cache folder without preloading (FAQ replies
then get cached as the run goes, and each measurement asks a question not asked before).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signaling.client.bot import BotError, BotOptions, run_bot
from signaling.client.loadgen import ProbeOptions
from signaling.client.misbehave import BEHAVIOURS, Behaviour, MisbehaveOptions, Misbehaver
from tests.harness.spawn import spawn_server

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = ("alone", "quiet", "misbehaving")
# Asked by the bystander; none is about a flood's topic (misbehave.FLOOD_TEXTS), so with
# --cache fresh a flood cannot warm the bystander's reply.
QUESTIONS = [
    "Is there a warranty on electronics?",
    "Where is your nearest store?",
    "How do I cancel my order?",
    "Do you sell gift cards?",
    "Can I exchange an item?",
    "How do I find my size?",
    "Do you have a membership program?",
    "Do you price match?",
    "Can I get an invoice?",
    "Do you offer bulk discounts?",
    "Can I change my delivery address?",
    "My item arrived damaged.",
]
WARM_UP = "Do you have any discounts?"
METRICS = {  # report field: (label, how it compares with alone)
    "video_fps": ("video fps", "ratio"),
    "av_skew_ms": ("A/V skew ms", "shift"),
    "reply_audio_latency_ms": ("reply audio latency ms", "ratio"),
    "reply_video_latency_ms": ("reply video latency ms", "ratio"),
    "mouth_audio_correlation": ("lip correlation", "ratio"),
    "server_cpu_pct": ("server CPU % of a core", "ratio"),
}


# ---- the misbehaving calls (child process) --------------------------------------------------
def _behaviours(n: int, kinds: str) -> list[tuple[Behaviour, ...]]:
    """The misbehaviours of each of ``n`` calls: cycled over the calls, and with fewer calls
    than kinds, some calls do two or three at once (every kind is always there)."""
    chosen = [k for k in BEHAVIOURS if k in kinds.split(",")]
    if n >= len(chosen):
        return [(chosen[i % len(chosen)],) for i in range(n)]
    return [tuple(chosen[i::n]) for i in range(n)]


class _Crowd:
    """The misbehaving calls of the child process, driven by commands on stdin."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.calls: list[Misbehaver] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> dict[str, Any]:
        probe = ProbeOptions(url=self.args.url, timeout_s=self.args.timeout_s)
        for i, kinds in enumerate(_behaviours(self.args.calls - 1, self.args.behaviours)):
            opts = MisbehaveOptions(
                behaviour=kinds[0], also=kinds[1:], text_per_s=self.args.text_per_s, seed=i
            )
            self.calls.append(Misbehaver(probe, opts))
        await asyncio.gather(*(c.connect() for c in self.calls))  # greeted and quiet
        return {"calls": len(self.calls)}

    async def misbehave(self) -> dict[str, Any]:
        self.stop = asyncio.Event()
        self.tasks = [asyncio.ensure_future(c.misbehave(self.stop)) for c in self.calls]
        return {}

    async def calm(self) -> dict[str, Any]:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return {"stats": [asdict(c.stats) for c in self.calls]}

    async def hangup(self) -> dict[str, Any]:
        await asyncio.gather(*(c.hang_up() for c in self.calls), return_exceptions=True)
        self.calls = []
        return {}


async def _crowd_main(args: argparse.Namespace) -> None:
    # Their clients would run on machines of their own: here they yield this one's CPU to the
    # server and the bot (what they make the server do is measured, not their own decoding).
    os.nice(10)
    crowd = _Crowd(args)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    commands = {
        "connect": crowd.connect,
        "misbehave": crowd.misbehave,
        "calm": crowd.calm,
        "hangup": crowd.hangup,
    }
    while line := (await reader.readline()).decode().strip():
        if line == "quit":
            break
        try:
            reply = {"ok": True, **await commands[line]()}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    await crowd.calm()
    await crowd.hangup()


class _CrowdProcess:
    """The parent's handle on the child process of misbehaving calls."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, args: argparse.Namespace) -> _CrowdProcess:
        cmd = [sys.executable, __file__, "--role", "crowd", "--url", url]
        cmd += ["--calls", str(args.calls), "--text-per-s", str(args.text_per_s)]
        cmd += ["--timeout-s", str(args.timeout_s), "--behaviours", args.behaviours]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(proc)

    async def do(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the misbehaving calls' process ended (at {command!r})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"misbehaving calls: {command}: {reply.get('error')}")
        return reply

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ---- the bystander ----------------------------------------------------------------------------
def _cpu_s(pid: int | None) -> float | None:
    """CPU seconds (all threads) process ``pid`` has used, None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ask(url: str, question: str, args: argparse.Namespace) -> dict[str, Any]:
    """One bot call typing ``question``: its numbers and the server's CPU meanwhile (% of
    one core); errors are listed, never raised."""
    began, cpu, wall = time.monotonic(), _cpu_s(args.server_pid), time.time()
    try:
        report = await run_bot(BotOptions(url=url, text=question, timeout_s=args.timeout_s))
    except BotError as exc:
        return {"question": question, "errors": [str(exc)]}
    numbers: dict[str, Any] = {k: getattr(report, k, None) for k in METRICS}
    numbers["at"] = [round(wall, 1), round(time.time(), 1)]  # Unix seconds, for server logs
    used = _cpu_s(args.server_pid)
    if cpu is not None and used is not None:
        numbers["server_cpu_pct"] = round(100 * (used - cpu) / (time.monotonic() - began), 1)
    stages = report.timings  # the server's marks, ms after the question arrived
    return {"question": question, **numbers, "stages": stages, "errors": list(report.errors)}


def _question(args: argparse.Namespace, round_: int, condition: int) -> str:
    if args.cache == "fresh":  # never asked before: not in the cache
        return QUESTIONS[(round_ * len(CONDITIONS) + condition) % len(QUESTIONS)]
    return QUESTIONS[round_ % len(QUESTIONS)]  # the same question in each condition


async def _round(
    url: str, args: argparse.Namespace, crowd: _CrowdProcess | None, r: int
) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    out: dict[str, dict[str, Any]] = {}
    stats: list[Any] = []
    out["alone"] = await _ask(url, _question(args, r, 0), args)
    if crowd is None:
        return out, stats
    await crowd.do("connect")
    try:
        out["quiet"] = await _ask(url, _question(args, r, 1), args)
        await crowd.do("misbehave")
        await asyncio.sleep(args.lead_s)  # let the misbehaviour build up first
        out["misbehaving"] = await _ask(url, _question(args, r, 2), args)
        stats = (await crowd.do("calm"))["stats"]
    finally:
        await crowd.do("hangup")
    return out, stats


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then ``args.rounds`` rounds of the three conditions; the results."""
    if args.warm_up:
        await _ask(url, WARM_UP, args)
    crowd = await _CrowdProcess.start(url, args) if args.calls > 1 else None
    rounds: list[dict[str, dict[str, Any]]] = []
    stats: list[list[Any]] = []
    try:
        for r in range(args.rounds):
            result, did = await _round(url, args, crowd, r)
            rounds.append(result)
            stats.append(did)
            print(f"round {r + 1}: {json.dumps(result)}", flush=True)
    finally:
        if crowd is not None:
            await crowd.close()
    return {
        "calls": args.calls,
        "behaviours": args.behaviours,
        "cache": args.cache,
        "rounds": rounds,
        "misbehaviour": stats,
    }


# ---- the table --------------------------------------------------------------------------------
def _median(rounds: list[dict[str, dict[str, Any]]], condition: str, key: str) -> float | None:
    values = [r[condition][key] for r in rounds if r.get(condition, {}).get(key) is not None]
    return statistics.median(values) if values else None


def _versus(value: float | None, alone: float | None, how: str) -> str:
    if value is None or alone is None:
        return "-"
    if how == "shift":
        return f"{value - alone:+.0f} ms"
    return f"{value / alone:.2f}x" if alone else "-"


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Medians per condition and metric, and the targets met (None: not measured)."""
    rounds = result["rounds"]
    med = {c: {k: _median(rounds, c, k) for k in METRICS} for c in CONDITIONS}
    bad, alone = med["misbehaving"], med["alone"]
    fps, skew, lat = bad["video_fps"], bad["av_skew_ms"], bad["reply_audio_latency_ms"]
    targets = {
        "fps >= 24": None if fps is None else fps >= 24.0,
        "skew within 40 ms of alone": None
        if skew is None or alone["av_skew_ms"] is None
        else abs(skew - alone["av_skew_ms"]) <= 40.0,
        "latency <= 1.2x alone": None
        if lat is None or not alone["reply_audio_latency_ms"]
        else lat <= 1.2 * alone["reply_audio_latency_ms"],
    }
    return {"medians": med, "targets": targets}


def print_table(result: dict[str, Any], summary: dict[str, Any]) -> None:
    med = summary["medians"]
    calls = _behaviours(result["calls"] - 1, result["behaviours"])
    kinds = ", ".join("+".join(k) for k in calls) or "none"
    print(
        f"\nbystander beside {result['calls'] - 1} calls ({kinds}); cache {result['cache']}; "
        f"medians of {len(result['rounds'])} round(s)"
    )
    print(f"{'metric':<24}{'alone':>9}{'quiet':>9}{'misbehaving':>13}{'quiet/alone':>13}"
          f"{'misbehaving/alone':>19}")  # fmt: skip
    for key, (label, how) in METRICS.items():
        cells = [med[c][key] for c in CONDITIONS]
        text = ["-" if v is None else f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}" for v in cells]
        quiet = _versus(cells[1], cells[0], how)
        bad = _versus(cells[2], cells[0], how)
        print(f"{label:<24}{text[0]:>9}{text[1]:>9}{text[2]:>13}{quiet:>13}{bad:>19}")
    for name, ok in summary["targets"].items():
        print(f"target {name:<28} {'-' if ok is None else 'met' if ok else 'MISSED'}")
    for r, stats in enumerate(result["misbehaviour"]):
        for s in stats:
            print(f"round {r + 1} misbehaving call: {s}")


# ---- the server -------------------------------------------------------------------------------
@contextlib.contextmanager
def _spawned(args: argparse.Namespace) -> Iterator[str]:
    """``avatar-rtc serve`` with the cache as asked and the per-address limits lifted (every
    caller of this benchmark comes from 127.0.0.1)."""
    with contextlib.ExitStack() as stack:
        avatars = stack.enter_context(tempfile.TemporaryDirectory(prefix="iso-avatars-"))
        env = {
            "AVATAR_RTC_ACCESS__REQUESTS_PER_S": "1000",
            "AVATAR_RTC_ACCESS__REQUEST_BURST": "1000",
            "AVATAR_RTC_ACCESS__MAX_CALLS_PER_IP": str(args.calls + 2),
        }
        if args.cache == "off":
            env["AVATAR_RTC_CACHE__ENABLED"] = "false"
        else:
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="iso-cache-"))
            env |= {
                "AVATAR_RTC_CACHE__DIR": cache,
                "AVATAR_RTC_CACHE__PRELOAD": "false",
                "AVATAR_RTC_CACHE__SPECULATE": "false",
            }
        server = stack.enter_context(
            spawn_server(
                args=("--max-sessions", str(args.calls + 2), "--avatars-dir", avatars),
                env=env,
                log=args.server_log,
                cwd=ROOT,
                ready_timeout_s=300,
                stop_timeout_s=20,
            )
        )
        print(f"avatar-rtc serve (pid {server.pid}) at {server.url}; log {server.log}")
        args.server_pid = server.pid
        yield server.url


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (default: spawn one)")
    p.add_argument("--server-pid", type=int, help="with --url: measure this process's CPU")
    p.add_argument("--calls", type=int, default=4, help="calls in all: N-1 misbehave")
    p.add_argument("--rounds", type=int, default=2, help="measurements per condition")
    p.add_argument(
        "--behaviours",
        default=",".join(BEHAVIOURS),
        help="misbehaviours cycled over the calls (default: all: %(default)s)",
    )
    p.add_argument("--text-per-s", type=float, default=5.0, help="typed messages a second")
    p.add_argument("--cache", choices=["off", "fresh"], default="off", help="spawned server")
    p.add_argument("--lead-s", type=float, default=2.0, help="misbehaving before measuring")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    p.add_argument("--tiny", action="store_true", help="smoke run: 2 calls, 1 round")
    p.add_argument("--timeout-s", type=float, default=40.0)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--server-log", type=Path, default=Path("artifacts/isolation-server.log"))
    p.add_argument("--role", choices=["crowd"], help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.tiny:
        args.calls, args.rounds, args.lead_s, args.warm_up = 2, 1, 1.0, False
    if args.calls < 1 or args.rounds < 1 or args.text_per_s <= 0:
        p.error("--calls and --rounds must be >= 1, --text-per-s positive")
    if not set(args.behaviours.split(",")) <= set(BEHAVIOURS):
        p.error(f"--behaviours takes a comma-separated list of {', '.join(BEHAVIOURS)}")
    if args.role == "crowd":
        asyncio.run(_crowd_main(args))
        return 0
    with contextlib.nullcontext(args.url.rstrip("/")) if args.url else _spawned(args) as url:
        result = asyncio.run(run(url, args))
    summary = summarize(result)
    print_table(result, summary)
    if args.json:
        args.json.write_text(json.dumps({**result, **summary}, indent=2))
    measured = all(r[c].get("video_fps") is not None for r in result["rounds"] for c in r)
    return 0 if measured else 1


if __name__ == "__main__":
    raise SystemExit(main())
