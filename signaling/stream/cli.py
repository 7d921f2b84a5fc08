"""``avatar-rtc stream``: the avatar live to RTMP(S), SRT, an RTSP server or rolling HLS."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["PLUGIN_DIR", "main"]

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"size {text!r}: use WIDTHxHEIGHT, e.g. 512x512")
    return int(w), int(h)


def _bitrate(text: str) -> int:
    t = text.lower().strip()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        return int(float(t.rstrip("km")) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bitrate {text!r}: use e.g. 1500k or 2m") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avatar-rtc stream",
        description="Stream the avatar live: push RTMP(S), SRT or RTSP, or write rolling HLS. "
        "Say things through the control socket (--control); see docs/streaming.md.",
    )
    p.add_argument(
        "url", nargs="?", help="rtmp(s)://..., srt://host:port, rtsp://..., or an HLS folder"
    )
    p.add_argument("--avatar", default="astronaut", help="prepared avatar (default astronaut)")
    p.add_argument("--renderer", choices=["warp", "musetalk"], help="face renderer")
    p.add_argument("--config", type=Path, help="avatar-rtc YAML configuration file")
    p.add_argument("--size", type=_size, default=(512, 512), help="WIDTHxHEIGHT (512x512)")
    p.add_argument("--fps", type=int, default=25, help="frame rate (25)")
    p.add_argument("--bitrate", type=_bitrate, default=1_500_000, help="video bitrate (1500k)")
    p.add_argument(
        "--encoder",
        choices=["auto", "nvenc", "x264", "vp8"],
        default="auto",
        help="auto: NVENC where GStreamer's nvcodec has a GPU, else x264",
    )
    p.add_argument(
        "--control",
        default="127.0.0.1:7070",
        help="control socket: HOST:PORT or unix:PATH ('' for none)",
    )
    p.add_argument(
        "--dialogue", action="store_true", help="answer 'ask' commands with the dialogue stage"
    )
    p.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="TEXT",
        help="say this once streaming (repeatable)",
    )
    p.add_argument(
        "--no-adapt", dest="adapt", action="store_false", help="keep the bitrate and size fixed"
    )
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: never)"
    )
    p.add_argument(
        "--print-env",
        action="store_true",
        help="print the GST_PLUGIN_PATH line for gst-launch-1.0 and exit",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    export = f"export GST_PLUGIN_PATH={PLUGIN_DIR}"
    if args.print_env:
        print(export)
        return 0
    if not args.url:
        parser().error("an output URL is needed (or --print-env)")
    from media.gst.output import OutputRunner, StreamEvent
    from media.gst.pipelines import OutputSpec, required
    from media.gst.runtime import GstMissing
    from media.gst.source import FPS_CHOICES, SourceError, SourceRequest

    width, height = args.size
    try:
        spec = OutputSpec(
            url=args.url,
            width=width,
            height=height,
            fps=args.fps,
            video_bps=args.bitrate,
            encoder=args.encoder,
        )
        request = SourceRequest(
            avatar=args.avatar,
            renderer=args.renderer or "",
            config=str(args.config) if args.config else "",
            control=args.control,
            dialogue=args.dialogue,
            fps=args.fps,
            height=height,
        )
        required(spec)  # encoder and container agree, the elements exist
        if args.fps not in FPS_CHOICES:
            raise ValueError(f"fps must be within 5..60 and divide 48000, got {args.fps}")
        from media.gst.element import register
        from signaling.stream.source import open_source

        register(open_source)
        source = open_source(request)
    except (ValueError, SourceError, GstMissing) as exc:
        print(f"avatar-rtc stream: {exc}", file=sys.stderr)
        return 2
    os.environ["GST_PLUGIN_PATH"] = str(PLUGIN_DIR)  # for gst-launch-1.0 started from here
    print(f"avatar-rtc stream: {spec.output_kind} to {args.url}", flush=True)
    if source.control_address:
        print(f"avatar-rtc stream: control {source.control_address}", flush=True)
    print(f"avatar-rtc stream: for gst-launch-1.0: {export}", flush=True)

    def on_event(event: StreamEvent) -> None:
        print(f"avatar-rtc stream: {event.kind} {event.detail}".rstrip(), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration > 0:
        threading.Timer(args.duration, stop.set).start()
    try:
        runner = OutputRunner(spec, source, quality=args.adapt, on_event=on_event)
        for text in args.say:
            source.call(_say(source, text))
        runner.run(stop)
    except (ValueError, GstMissing) as exc:
        print(f"avatar-rtc stream: {exc}", file=sys.stderr)
        return 2
    finally:
        source.close()
    return 0


async def _say(source: Any, text: str) -> int:
    return int(source.engine.say(text))
