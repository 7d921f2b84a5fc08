"""``avatar-rtc render``: text, an audio file or a script CSV → lip-synced MP4s.

    avatar-rtc render [--avatar NAME] (--text TEXT | --audio FILE | --script FILE.csv)
                      --out DIR_OR_FILE [--avatars-dir DIR] [--renderer warp|musetalk
                      --musetalk-dir DIR] [--height 512]

Exit status: 0 done, 1 a render failed, 2 bad input (missing avatar, unreadable audio,
malformed script, bad flags).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inference.avatar import DEFAULT_AVATAR_NAME, InvalidName, validate_name

from .avatars import AvatarSource
from .errors import OfflineInputError
from .frames import FrameSource, WarpFrames
from .pipeline import BatchRenderer, JobResult, RenderFailed, RenderJob, RenderOptions
from .script import LANGUAGES, read_script

if TYPE_CHECKING:
    from inference.tts import Tts

__all__ = ["build_parser", "main"]

_log = logging.getLogger("avatar_rtc.render")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``avatar-rtc render``."""
    p = argparse.ArgumentParser(
        prog="avatar-rtc render",
        description="Render lip-synced MP4s (H.264 + AAC) of an avatar offline.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text to speak (TTS: piper for en, Kokoro for zh)")
    what.add_argument("--audio", type=Path, help="an audio file of any format FFmpeg reads")
    what.add_argument(
        "--script", type=Path, help="a CSV with columns id,text[,language][,avatar]: OUT/ID.mp4"
    )
    p.add_argument("--out", type=Path, required=True, help="an .mp4 file, or a folder")
    p.add_argument("--avatar", default=DEFAULT_AVATAR_NAME, help="prepared avatar name")
    p.add_argument("--avatars-dir", type=Path, default=Path("avatars"), help="avatar folder")
    p.add_argument("--language", choices=LANGUAGES, help="language of --text (default: detect)")
    p.add_argument("--renderer", choices=["warp", "musetalk"], default="warp")
    p.add_argument("--musetalk-dir", type=Path, help="MuseTalk v1.5 weights folder")
    p.add_argument("--device", help="musetalk device (default: cuda:0)")
    p.add_argument(
        "--compile", action="store_true", help="musetalk: torch.compile (slower start, faster)"
    )
    p.add_argument("--height", type=int, default=512, help="output height in pixels")
    p.add_argument("--keep-going", action="store_true", help="go on after a row fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(
    argv: list[str],
    *,
    frames: FrameSource | None = None,
    tts: Callable[[], Tts] | None = None,
) -> int:
    """Run ``avatar-rtc render`` with ``argv``; returns the exit status.

    ``frames`` and ``tts`` replace the renderer and the TTS factory (tests, embedding).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error
        return int(exc.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = RenderOptions(
            height=args.height, keep_going=args.keep_going, progress=not args.no_progress
        )
        jobs = _jobs(args)
        source = frames or _frame_source(args)
    except (OfflineInputError, ValueError, FileNotFoundError) as exc:
        print(f"avatar-rtc render: {exc}", file=sys.stderr)
        return 2
    from inference.tts import TTS_BACKENDS, make_tts

    tts_options = TTS_BACKENDS.default_section().options()  # piper (en) and Kokoro (zh)
    renderer = BatchRenderer(
        frames=source,
        avatars=AvatarSource(args.avatars_dir).get,
        tts=tts or (lambda: make_tts(tts_options)),
        tts_description=repr(tts_options) if tts is None else "injected",
        options=options,
    )
    t0 = time.perf_counter()
    try:
        results = asyncio.run(renderer.run(jobs))
    except OfflineInputError as exc:
        print(f"avatar-rtc render: {exc}", file=sys.stderr)
        return 2
    except RenderFailed as exc:
        print(f"avatar-rtc render: {exc}", file=sys.stderr)
        return 1
    finally:
        if frames is None:
            source.close()
    print(_summary(results, time.perf_counter() - t0))
    return 1 if any(r.status == "failed" for r in results) else 0


def _jobs(args: argparse.Namespace) -> list[RenderJob]:
    try:
        validate_name(args.avatar)
    except InvalidName as exc:
        raise OfflineInputError(str(exc)) from exc
    out: Path = args.out
    if args.script is not None:
        if out.suffix.lower() == ".mp4" or out.is_file():
            raise OfflineInputError(f"--out must be a folder with --script, got {out}")
        return [
            RenderJob(
                id=row.id,
                out=out / f"{row.id}.mp4",
                avatar=row.avatar or args.avatar,
                text=row.text,
                language=row.language,
                resume=True,
            )
            for row in read_script(args.script)
        ]
    if args.audio is not None:
        if not args.audio.is_file():
            raise OfflineInputError(f"audio file not found: {args.audio}")
        target = _target(out, args.audio.stem)
        return [RenderJob(id=target.stem, out=target, avatar=args.avatar, audio=args.audio)]
    text = args.text.strip()
    if not text:
        raise OfflineInputError("--text is empty")
    from inference.dialogue.text import detect_language

    stem = "speech-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    target = _target(out, stem)
    language = args.language or detect_language(text)
    return [RenderJob(id=target.stem, out=target, avatar=args.avatar, text=text, language=language)]


def _target(out: Path, stem: str) -> Path:
    """``out`` itself when it names an .mp4 file, else ``out/STEM.mp4``."""
    return out if out.suffix.lower() == ".mp4" else out / f"{stem}.mp4"


def _frame_source(args: argparse.Namespace) -> FrameSource:
    if args.renderer == "warp":
        if args.musetalk_dir is not None or args.device is not None or args.compile:
            raise OfflineInputError(
                "--musetalk-dir, --device and --compile need --renderer musetalk"
            )
        return WarpFrames()
    if args.musetalk_dir is None:
        raise OfflineInputError("--renderer musetalk needs --musetalk-dir (the weights folder)")
    import torch

    from inference.render.musetalk import WeightsError

    from .musetalk import MuseTalkFrames, MuseTalkFramesOptions

    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        _log.warning("MuseTalk on the CPU is very slow; use a CUDA machine for real work")
    try:
        options = MuseTalkFramesOptions(device=device, compile=args.compile)
        return MuseTalkFrames.load(args.musetalk_dir, options)
    except (WeightsError, RuntimeError) as exc:
        raise OfflineInputError(str(exc)) from exc


def _summary(results: list[JobResult], wall_s: float) -> str:
    done = [r for r in results if r.status == "rendered"]
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    video_s = sum(r.video_s for r in done)
    speed = video_s / wall_s if wall_s > 0 else 0.0
    lines = [
        f"rendered {len(done)}, skipped {skipped}, failed {len(failed)}: "
        f"{video_s:.1f} s of video in {wall_s:.1f} s ({speed:.2f}× real time)"
    ]
    lines += [f"  {r.job.out}" for r in done]
    lines += [f"  FAILED {r.job.id}: {r.error}" for r in failed]
    return "\n".join(lines)
