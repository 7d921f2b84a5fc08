"""``prepare INPUT --name NAME [--root DIR]``: the avatar part of the ``avatar-rtc`` CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import AvatarError
from .prepare import PrepareOptions
from .store import AvatarStore

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-rtc avatar", description="Prepare and list avatars for the renderers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser(
        "prepare",
        help="prepare a face photo (JPEG/PNG/WebP) or video (MP4/WebM/MOV) as avatar NAME",
    )
    prep.add_argument("input", type=Path, help="photo or video of one face")
    prep.add_argument(
        "--name",
        required=True,
        help="avatar name: 1-64 ASCII letters, digits, _ - . starting with a letter or digit",
    )
    prep.add_argument("--root", type=Path, default=Path("avatars"), help="avatar store folder")
    prep.add_argument(
        "--max-side", type=int, default=960, help="long side the frames are scaled down to"
    )
    prep.add_argument(
        "--max-pixels",
        type=int,
        default=PrepareOptions().max_input_pixels,
        help="refuse a photo or video frame larger than this many pixels (read from its "
        "header, before decoding)",
    )
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    lst = sub.add_parser("list", help="list prepared avatars")
    lst.add_argument("--root", type=Path, default=Path("avatars"), help="avatar store folder")
    return parser


def main(argv: list[str]) -> int:
    """Run the command; returns 0 on success, 2 on bad input (the error is printed)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for info in AvatarStore(args.root).list():
                w, h = info.frame_size
                print(
                    f"{info.name}\t{info.kind}\t{info.num_frames} frames\t{w}x{h}\t{info.fps:g} fps"
                )
            return 0
        options = PrepareOptions(max_long_side=args.max_side, max_input_pixels=args.max_pixels)
        store = AvatarStore(args.root, options=options)
        quiet = (lambda done, total: None) if args.quiet else None
        avatar = store.prepare(args.input, args.name, progress=quiet)
    except (AvatarError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in avatar.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    w, h = avatar.size
    print(
        f"prepared avatar {avatar.name!r} ({avatar.kind}, {avatar.num_frames} frames, {w}x{h}) "
        f"in {store.path(avatar.name)}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
