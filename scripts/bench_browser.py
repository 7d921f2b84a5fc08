"""Browser-side numbers of a call: Debian's chromium on the call page, the real server.

    python scripts/bench_browser.py                   # starts avatar-rtc serve, 3 calls
    python scripts/bench_browser.py --calls 5 --json artifacts/browser/bench.json
    python scripts/bench_browser.py --url http://127.0.0.1:8080   # a server already running

Each call runs in a fresh headless chromium whose fake microphone asks ``--question`` (our
own TTS) after ``--lead-s`` of silence. Per call it prints:

- click → first avatar frame: ``performance.measure("call-to-first-frame")`` on the page,
  from the click on Call to the first video frame presented (requestVideoFrameCallback);
- the browser's own ``getStats()`` figures, once a second while the avatar speaks the answer
  (the call page's quality indicator computes them with ``static/stats.js``): received fps,
  audio and video jitter, audio and video playout-buffer delay (``jitterBufferDelay /
  jitterBufferEmittedCount`` over the interval) and their difference, the lip-sync offset the
  receive buffers add.

Then the median over calls. Needs ``/usr/bin/chromium`` (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.harness import launch_chromium, run_server, write_question_wav  # noqa: E402

FIGURES = ("fps", "audioJitterMs", "videoJitterMs", "audioDelayMs", "videoDelayMs", "avOffsetMs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", help="a running server (default: start avatar-rtc serve)")
    p.add_argument("--calls", type=int, default=3, help="calls to measure (default 3)")
    p.add_argument("--question", default="What are your opening hours?")
    p.add_argument("--lead-s", type=float, default=2.0, help="silence before the question")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per call")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.calls < 1:
        p.error("--calls must be >= 1")
    return args


async def _dataset(page: Any) -> dict[str, float]:
    data: dict[str, str] = await page.evaluate("({...document.querySelector('#quality').dataset})")
    out = {}
    for key, value in data.items():
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


async def one_call(url: str, fake_audio: str, timeout_s: float) -> dict[str, Any]:
    """One call: click → first frame, then getStats figures while the answer plays."""
    timeout_ms = timeout_s * 1000
    async with launch_chromium(fake_audio) as context:
        page = await context.new_page()
        await page.goto(url + "/")
        await page.wait_for_function("document.querySelector('#avatar').options.length > 0")
        clicked = time.perf_counter()
        await page.click("#call")
        await page.wait_for_function(
            "document.querySelector('#avatar-video').dataset.firstFrame === 'true'",
            timeout=timeout_ms,
        )
        first_frame_ms = await page.evaluate(
            "performance.getEntriesByName('call-to-first-frame')[0].duration"
        )
        connected_wall_ms = (time.perf_counter() - clicked) * 1000
        await page.wait_for_function(
            "document.querySelector('#captions .caption.caller') !== null", timeout=timeout_ms
        )
        await page.wait_for_function(
            "document.querySelector('#agent-state').dataset.state === 'speaking'",
            timeout=timeout_ms,
        )
        samples: list[dict[str, float]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await page.wait_for_timeout(1000)
            if await page.get_attribute("#agent-state", "data-state") != "speaking":
                break
            samples.append(await _dataset(page))
        await page.click("#hangup")
    return {
        "first_frame_ms": round(first_frame_ms, 1),
        "click_to_first_frame_wall_ms": round(connected_wall_ms, 1),
        "reply_samples": samples,
        "reply": {k: _median([s[k] for s in samples if k in s]) for k in FIGURES},
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


async def bench(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        mic = write_question_wav(args.question, Path(tmp) / "question.wav", lead_s=args.lead_s)
        results = []
        for i in range(args.calls):
            result = await one_call(url, mic.flag_value, args.timeout_s)
            reply = result["reply"]
            print(
                f"call {i + 1}: click → first frame {result['first_frame_ms']:.0f} ms; "
                f"during the reply ({len(result['reply_samples'])} s): "
                + ", ".join(f"{k} {reply[k]}" for k in FIGURES),
                flush=True,
            )
            results.append(result)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        print(f"{chromium} is missing: run scripts/setup.sh (apt chromium)", file=sys.stderr)
        return 2
    if args.url:
        results = asyncio.run(bench(args.url.rstrip("/"), args))
    else:
        log = ROOT / "artifacts" / "browser" / "bench-server.log"
        with run_server(log=log) as url:
            results = asyncio.run(bench(url, args))
    summary = {
        "calls": len(results),
        "first_frame_ms": _median([r["first_frame_ms"] for r in results]),
        **{
            k: _median([r["reply"][k] for r in results if r["reply"][k] is not None])
            for k in FIGURES
        },
    }
    print("median over calls: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "calls": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
