"""Headless recording bot: a WebRTC caller that speaks a WAV, records the reply, reports numbers.

``avatar-rtc bot --url URL --audio question.wav --record reply.mp4 --report report.json``
(see :func:`main`); from Python, ``await run_bot(BotOptions(url=..., audio=...))``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from signaling.client.bot_audio import AudioFileError, load_audio
from signaling.client.bot_call import BotCall
from signaling.client.bot_options import LOOPBACK_ENV, BotError, BotOptions
from signaling.client.bot_report import BotReport

__all__ = [
    "LOOPBACK_ENV",
    "AudioFileError",
    "BotError",
    "BotOptions",
    "BotReport",
    "main",
    "run_bot",
]


async def run_bot(options: BotOptions) -> BotReport:
    """Make one call as ``options`` say and return its report (also written to options.report).

    Raises AudioFileError for unreadable audio (before connecting) and BotError when the
    call cannot be made; problems during a made call are listed in ``report.errors``.
    """
    question = await asyncio.to_thread(load_audio, options.audio) if options.audio else None
    interrupt = (
        await asyncio.to_thread(load_audio, options.interrupt_audio)
        if options.interrupt_audio
        else None
    )
    report = await BotCall(options, question, interrupt).run()
    if options.report is not None:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-rtc bot", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--audio", type=Path, help="question audio (any rate, channels, format)")
    q.add_argument("--text", help="typed question instead of audio")
    p.add_argument("--record", type=Path, help="write the received audio+video to this MP4")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--interrupt-audio", type=Path, help="speak this while the reply plays")
    p.add_argument("--interrupt-after-ms", type=float, default=800.0, help="after reply onset")
    p.add_argument("--avatar", help="avatar name (GET /avatars lists them)")
    p.add_argument("--language", choices=["en", "zh"])
    p.add_argument("--timeout-s", type=float, default=30.0, help="bound of each wait")
    p.add_argument("--listen-s", type=float, help="record this long after the bot's last speech")
    p.add_argument("--settle-s", type=float, default=0.6, help="quiet time before asking")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help="access token from POST /session (or $AVATAR_RTC_TOKEN)")
    auth.add_argument(
        "--api-key", help="API key: the bot asks POST /session for a token (or $AVATAR_RTC_API_KEY)"
    )
    lo = p.add_mutually_exclusive_group()
    lo.add_argument("--loopback-candidates", dest="loopback", action="store_true", default=None)
    lo.add_argument("--no-loopback-candidates", dest="loopback", action="store_false")
    return p


def main(argv: list[str]) -> int:
    """CLI entry: 0 success, 1 call failed or incomplete, 2 bad arguments or audio file."""
    args = _parser().parse_args(argv)
    try:
        options = BotOptions(
            url=args.url,
            audio=args.audio,
            text=args.text,
            record=args.record,
            report=args.report,
            interrupt_audio=args.interrupt_audio,
            interrupt_after_ms=args.interrupt_after_ms,
            avatar=args.avatar,
            language=args.language,
            timeout_s=args.timeout_s,
            listen_s=args.listen_s,
            settle_s=args.settle_s,
            loopback_candidates=args.loopback,
            token=args.token or os.environ.get("AVATAR_RTC_TOKEN") or None,
            api_key=None if args.token else args.api_key or os.environ.get("AVATAR_RTC_API_KEY"),
        )
    except ValueError as exc:
        print(f"avatar-rtc bot: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run_bot(options))
    except AudioFileError as exc:
        print(f"avatar-rtc bot: error: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"avatar-rtc bot: call failed: {exc}", file=sys.stderr)
        return 1
    summary = {k: v for k, v in report.to_json().items() if k not in ("events",)}
    print(json.dumps(summary, ensure_ascii=False))
    for e in report.errors:
        print(f"avatar-rtc bot: {e}", file=sys.stderr)
    return 0 if not report.errors and report.reply_audio_latency_ms is not None else 1
