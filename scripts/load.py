"""Load: N concurrent callers on loopback; the largest N at which every call keeps its frame
rate and gets its reply, and a clean 503 for the call beyond the cap.

    python scripts/load.py                          # spawns `avatar-rtc serve` (embedded defaults)
    python scripts/load.py --max-n 4 --min-fps 24
    python scripts/load.py --url http://127.0.0.1:8080 --cap 8   # a running server

For N = 1, 2, … up to the cap (``--max-n``): N calls connect, all ask a typed FAQ question at
once, and each measures the video frames it receives from the question until its reply ends.
A level passes when every call got a reply and its mean fps ≥ ``--min-fps``; the ramp stops
at the first failing level. Then ``cap`` calls are held and one more offer must get 503 with
``Retry-After``. The spawned server lifts the per-IP request limit (all callers share
127.0.0.1). The callers run in this process, on the same cores as the server.
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
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from tests.harness.spawn import spawn_server

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    "What are your opening hours?",
    "How long does shipping take?",
    "Which payment methods do you accept?",
    "How can I return an item and get a refund?",
    "How do I check the status of my order?",
    "Is there a warranty on electronics?",
    "Where is your nearest store?",
    "Do you ship internationally?",
]


def _health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))
    except OSError:
        return {"status": "down"}


async def _wait_idle(url: str, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if (await asyncio.to_thread(_health, url)).get("sessions", 1) == 0:
            return
        await asyncio.sleep(0.2)


async def _one(call: ProbeCall, question: str, go: asyncio.Event) -> dict[str, Any]:
    await call.connect()
    await call.wait_connected()
    with contextlib.suppress(TimeoutError):  # let the greeting end (or not start)
        spoke = await asyncio.wait_for(call.wait_event("state", state="speaking"), 8)
        await call.wait_event("state", start=spoke, state="listening")
    await go.wait()
    asked = time.monotonic()
    reply = ""
    error = None
    try:
        reply = await call.ask(question)
    except TimeoutError:
        error = "no reply in time"
    ended = time.monotonic()
    return {
        "reply": bool(reply),
        "error": error,
        "fps": round(call.fps(asked, ended), 2),
        "worst_1s_fps": round(call.worst_window_fps(asked, ended), 2),
        "reply_s": round(ended - asked, 2),
    }


async def level(url: str, n: int, timeout_s: float) -> list[dict[str, Any]]:
    calls = [ProbeCall(ProbeOptions(url=url, timeout_s=timeout_s)) for _ in range(n)]
    go = asyncio.Event()
    tasks = []
    for i, call in enumerate(calls):
        tasks.append(asyncio.ensure_future(_one(call, QUESTIONS[i % len(QUESTIONS)], go)))
        await asyncio.sleep(0.2)

    async def release() -> None:  # ask together once everyone is connected and quiet
        await asyncio.sleep(1.0)
        for _ in range(int(timeout_s / 0.1)):
            if all(c.video_times for c in calls) or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.1)
        go.set()

    releaser = asyncio.ensure_future(release())
    results = await asyncio.gather(*tasks, return_exceptions=True)
    releaser.cancel()
    await asyncio.gather(*(c.hang_up() for c in calls), return_exceptions=True)
    out = []
    for r in results:
        if isinstance(r, BaseException):
            out.append({"reply": False, "error": f"{type(r).__name__}: {r}", "fps": 0.0})
        else:
            out.append(r)
    return out


async def beyond_cap(url: str, cap: int, timeout_s: float) -> dict[str, Any]:
    held = [ProbeCall(ProbeOptions(url=url, timeout_s=timeout_s)) for _ in range(cap)]
    try:
        for call in held:
            await call.connect()
        extra = ProbeCall(ProbeOptions(url=url, timeout_s=timeout_s))
        try:
            await extra.connect()
            return {"status": 200, "clean_503": False}
        except OfferRefused as exc:
            return {
                "status": exc.status,
                "retry_after": exc.retry_after,
                "error": exc.reason,
                "clean_503": exc.status == 503 and bool(exc.retry_after),
            }
        finally:
            await extra.hang_up()
    finally:
        await asyncio.gather(*(c.hang_up() for c in held), return_exceptions=True)


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    max_n = args.max_n or args.cap
    levels: dict[int, Any] = {}
    best = 0
    for n in range(1, max_n + 1):
        await _wait_idle(url)
        results = await level(url, n, args.timeout_s)
        passed = all(r["reply"] and r["fps"] >= args.min_fps for r in results)
        fps = [r["fps"] for r in results]
        levels[n] = {
            "passed": passed,
            "min_fps": min(fps),
            "median_fps": statistics.median(fps),
            "calls": results,
        }
        print(
            f"N={n}: {'pass' if passed else 'FAIL'}  fps min {min(fps):.1f} "
            f"median {statistics.median(fps):.1f}  replies "
            f"{sum(r['reply'] for r in results)}/{n}",
            flush=True,
        )
        if not passed:
            break
        best = n
    await _wait_idle(url)
    cap = await beyond_cap(url, args.cap, args.timeout_s)
    print(f"call {args.cap + 1} beyond the cap: {cap}", flush=True)
    return {
        "largest_n": best,
        "min_fps": args.min_fps,
        "cap": args.cap,
        "levels": levels,
        "beyond_cap": cap,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (default: spawn one)")
    p.add_argument("--cap", type=int, default=8, help="the server's max_sessions")
    p.add_argument("--max-n", type=int, help="largest N tried (default: the cap)")
    p.add_argument("--min-fps", type=float, default=24.0)
    p.add_argument("--timeout-s", type=float, default=40.0)
    p.add_argument("--json", type=Path, help="write the full result here")
    p.add_argument("--server-log", type=Path, default=Path("artifacts/load-server.log"))
    args = p.parse_args()
    if args.cap < 1 or (args.max_n is not None and args.max_n < 1):
        p.error("--cap and --max-n must be >= 1")
    if args.url:
        result = asyncio.run(run(args.url.rstrip("/"), args))
    else:
        with (
            tempfile.TemporaryDirectory(prefix="load-avatars-") as avatars,
            spawn_server(
                args=("--max-sessions", str(args.cap), "--avatars-dir", avatars),
                env={  # every caller is 127.0.0.1: lift the per-IP limits
                    "AVATAR_RTC_ACCESS__REQUESTS_PER_S": "1000",
                    "AVATAR_RTC_ACCESS__MAX_CALLS_PER_IP": str(args.cap),
                    "AVATAR_RTC_ACCESS__MAX_CONNECTIONS_PER_IP": str(4 * args.cap + 16),
                },
                log=args.server_log,
                cwd=ROOT,
                ready_timeout_s=300,
                stop_timeout_s=20,
            ) as server,
        ):
            result = asyncio.run(run(server.url, args))
    summary = {k: v for k, v in result.items() if k != "levels"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["largest_n"] >= 1 and result["beyond_cap"]["clean_503"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
