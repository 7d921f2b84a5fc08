"""A real browser behind a real bottleneck: how soon the server steps down, and what the
browser heard.

    python scripts/bench_browser_congestion.py              # 3 calls per mode, 200 kbps cap
    python scripts/bench_browser_congestion.py --runs 5 --cap-kbps 400 --json out.json

Debian's chromium runs inside a network namespace (``tests.harness.netns.TbfNamespace``) and calls
the real server on the host; the host → namespace direction, the server's media, goes
through the kernel's token bucket filter (``tc tbf``, 1 s queue) once the avatar is
speaking (the rung gauge is set once a change is applied, which includes rendering the
idle loop at the new size: both modes pay that). Two modes per run: ``feedback`` (the
browser's offer as it is: transport-cc, so the server numbers its packets and estimates
from the browser's transport feedback) and
``remb`` (transport-cc taken out of the offer on its way, as an older client would send it:
the browser's own REMB is the signal). Printed per call: how long after the cap the
server's quality rung first changed (read from ``/metrics`` every 20 ms) and to what, and
what the browser's ``getStats()`` reports over the 4 s after the cap: concealed audio
(``concealedSamples`` share: the voice that did not arrive in time to be played) and
video freezes (``freezeCount`` / ``totalFreezesDuration``). Needs root (a namespace) and
``/usr/bin/chromium``.

``--impairment loss`` drops ``--loss-pct`` of the server's packets at random instead (the
kernel's ``statistic`` match, through ``iptables``), for ``--watch-s`` seconds.
``--voice-fec-pct N`` starts the server with Opus in-band FEC in its voice
(``media.voice_fec_loss_pct``); mode ``no-fec`` then takes ``useinbandfec=1`` out of the
browser's offer, so that call's voice goes without it. The audio's ``packetsLost`` and
``fecPacketsReceived`` are printed with the concealed share.

    python scripts/bench_browser_congestion.py --impairment loss --loss-pct 5 \
        --voice-fec-pct 10 --modes feedback no-fec --runs 5 --watch-s 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.harness import CHROMIUM, launch_chromium, run_server  # noqa: E402
from tests.harness.netns import TbfNamespace, TbfOptions, unavailable_reason  # noqa: E402

_TRANSPORT_CC = re.compile(
    r"a=(extmap:\d+ http://www\.ietf\.org/id/draft-holmer[^\r\n]*|rtcp-fb:\d+ transport-cc)\r?\n"
)
_STATS_JS = """
async () => {
  // the page's own reading of getStats() (static/stats.js), inbound audio and video
  const { snapshot } = await import("/static/stats.js");
  const snap = snapshot(await window.avatarCall.pc.getStats());
  const a = snap.audio ?? {}, v = snap.video ?? {};
  return {
    concealed: a.concealedSamples ?? 0, samples: a.totalSamplesReceived ?? 0,
    lost: a.packetsLost ?? 0, received: a.packetsReceived ?? 0,
    fec: a.fecPacketsReceived ?? 0,
    freezes: v.freezeCount ?? 0, freezeS: v.totalFreezesDuration ?? 0,
  };
}
"""


def _rung(url: str) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=2) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("avatar_quality_rung{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def one_call(
    ns: TbfNamespace, url: str, wrapper: Path, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    from playwright.async_api import Route

    # the page's origin is the host's namespace-facing address: not "localhost"
    secure = f"--unsafely-treat-insecure-origin-as-secure={url}"
    async with launch_chromium("/dev/null", executable=wrapper, extra_args=(secure,)) as context:
        page = await context.new_page()
        if mode == "remb":

            async def without_transport_cc(route: Route) -> None:
                body = json.loads(route.request.post_data or "{}")
                body["sdp"] = _TRANSPORT_CC.sub("", body.get("sdp", ""))
                await route.continue_(post_data=json.dumps(body))

            await page.route("**/offer", without_transport_cc)
        if mode == "no-fec":

            async def without_fec(route: Route) -> None:
                body = json.loads(route.request.post_data or "{}")
                body["sdp"] = body.get("sdp", "").replace(";useinbandfec=1", "")
                await route.continue_(post_data=json.dumps(body))

            await page.route("**/offer", without_fec)
        await page.goto(url + "/")
        await page.click("#call")
        await page.wait_for_function(
            "document.querySelector('#connection').dataset.state === 'connected'",
            timeout=30_000,
        )
        await page.fill("#type-text", args.question)
        await page.click("#send")
        await page.wait_for_function(
            "document.querySelector('#agent-state').dataset.state === 'speaking'",
            timeout=30_000,
        )
        await asyncio.sleep(args.settle_s)  # the call at its top rung, speaking
        before = await page.evaluate(_STATS_JS)
        start_rung = await asyncio.to_thread(_rung, url)
        t0 = time.monotonic()
        if args.impairment == "cap":
            ns.shape(TbfOptions(rate_bps=args.cap_kbps * 1000, latency_s=1.0))
        else:
            ns.lose(args.loss_pct / 100)
        first: tuple[float, float] | None = None
        try:
            while time.monotonic() - t0 < args.watch_s:
                rung = await asyncio.to_thread(_rung, url)
                if first is None and rung is not None and rung != start_rung:
                    first = (time.monotonic() - t0, rung)
                await asyncio.sleep(0.02)
            after = await page.evaluate(_STATS_JS)
        finally:
            ns.shape(None)
            if args.impairment == "loss":
                ns.lose(None)
        await page.click("#hangup")
    samples = after.get("samples", 0) - before.get("samples", 0)
    concealed = after.get("concealed", 0) - before.get("concealed", 0)
    return {
        "mode": mode,
        "step_down_ms": None if first is None else round(first[0] * 1000),
        "rung": None if first is None else first[1],
        "concealed_audio_pct": round(100 * concealed / samples, 1) if samples else None,
        "audio_packets_lost": after.get("lost", 0) - before.get("lost", 0),
        "audio_packets": after.get("received", 0) - before.get("received", 0),
        "audio_fec_packets": after.get("fec", 0) - before.get("fec", 0),
        "video_freezes": after.get("freezes", 0) - before.get("freezes", 0),
        "video_freeze_s": round(after.get("freezeS", 0) - before.get("freezeS", 0), 2),
    }


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with TbfNamespace() as ns, tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "chromium-in-namespace"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        env = {"AVATAR_RTC_ACCESS__ANONYMOUS": "any"}  # the caller is not on loopback
        if args.voice_fec_pct:
            env["AVATAR_RTC_MEDIA__VOICE_FEC_LOSS_PCT"] = str(args.voice_fec_pct)
        log = args.server_log or Path(tmp) / "server.log"
        with run_server(log=log, env=env, args=("--host", "0.0.0.0")) as local:
            url = f"http://{ns.host_addr}:{local.rsplit(':', 1)[1]}"
            for run in range(args.runs):
                for mode in args.modes:
                    r = await one_call(ns, url, wrapper, mode, args)
                    r["run"] = run
                    print(json.dumps(r), flush=True)
                    results.append(r)
    return results


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3, help="calls per mode")
    p.add_argument(
        "--modes", nargs="+", default=["feedback", "remb"], choices=["feedback", "remb", "no-fec"]
    )
    p.add_argument("--impairment", choices=["cap", "loss"], default="cap")
    p.add_argument("--cap-kbps", type=int, default=200)
    p.add_argument("--loss-pct", type=float, default=2.0, help="with --impairment loss")
    p.add_argument("--voice-fec-pct", type=int, default=0, help="the server's voice FEC")
    p.add_argument("--settle-s", type=float, default=3.0, help="speaking before the cap")
    p.add_argument("--watch-s", type=float, default=4.0, help="watched after the cap")
    p.add_argument("--question", default="What is your return policy?")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--server-log", type=Path, help="keep the server's log here")
    args = p.parse_args(argv)
    if args.runs < 1 or args.cap_kbps < 8 or not 0 < args.loss_pct < 100:
        p.error("--runs must be >= 1, --cap-kbps >= 8 and --loss-pct within (0, 100)")
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print(f"cannot run: {CHROMIUM} is missing (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    results = asyncio.run(bench(args))
    what = f"cap {args.cap_kbps} kbps" if args.impairment == "cap" else f"loss {args.loss_pct} %"
    print(f"\n{what}; medians over {args.runs} call(s) per mode:")
    print(
        f"{'mode':9} {'step down ms':>12} {'concealed audio %':>17} {'freezes':>7} {'freeze s':>8}"
        f" {'audio lost':>10}"
    )
    for mode in args.modes:
        rs = [r for r in results if r["mode"] == mode]
        print(
            f"{mode:9} {_median([r['step_down_ms'] for r in rs])!s:>12} "
            f"{_median([r['concealed_audio_pct'] for r in rs])!s:>17} "
            f"{_median([r['video_freezes'] for r in rs])!s:>7} "
            f"{_median([r['video_freeze_s'] for r in rs])!s:>8} "
            f"{_median([r['audio_packets_lost'] for r in rs])!s:>10}"
        )
        print(f"  per call step down ms: {[r['step_down_ms'] for r in rs]}")
        print(f"  per call concealed audio %: {[r['concealed_audio_pct'] for r in rs]}")
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
