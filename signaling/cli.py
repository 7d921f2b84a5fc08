"""The ``avatar-rtc`` command: serve, bot, prepare, config."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avatar-rtc serve", description="Run the call server.")
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--avatar", help="default avatar name")
    parser.add_argument("--renderer", choices=["warp", "musetalk"], help="face renderer")
    parser.add_argument("--musetalk-dir", type=Path, help="MuseTalk v1.5 weights folder")
    parser.add_argument("--avatars-dir", type=Path, help="folder of prepared avatars")
    parser.add_argument("--max-sessions", type=int, help="concurrent call limit")
    parser.add_argument("--log-format", choices=["console", "json"])
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--no-metrics",
        dest="metrics_enabled",
        action="store_false",
        default=None,
        help="turn /metrics and its counters off",
    )
    args = parser.parse_args(argv)

    from signaling.config import ConfigError, load_settings
    from signaling.preflight import check_startup
    from signaling.server.app import create_app, serve
    from signaling.server.logs import configure_logging, get_logger

    overrides: dict[str, Any] = {}
    for key in ("host", "port", "max_sessions", "log_format", "log_level", "metrics_enabled"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    render: dict[str, Any] = {}
    for key in ("avatar", "renderer", "musetalk_dir", "avatars_dir"):
        if getattr(args, key) is not None:
            render[key] = getattr(args, key)
    if render:
        overrides["render"] = render
    try:
        settings = load_settings(args.config, overrides)
        check_startup(settings)
    except ConfigError as exc:
        print(f"avatar-rtc: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, level=settings.log_level.upper())
    get_logger("avatar_rtc").info("configuration", config=settings.masked())
    app = create_app(settings)
    print(f"avatar-rtc: serving on http://{settings.host}:{settings.port}/", flush=True)
    asyncio.run(serve(app, settings.host, settings.port))
    return 0


def _config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avatar-rtc config", description="Check a config file.")
    parser.add_argument("--check", type=Path, required=True, metavar="FILE")
    args = parser.parse_args(argv)
    from signaling.config import ConfigError, load_settings
    from signaling.preflight import check_startup

    try:
        settings = load_settings(args.check)
        check_startup(settings)
    except ConfigError as exc:
        print(f"avatar-rtc: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


def _bot(argv: list[str]) -> int:
    from signaling.client.bot import main as bot_main

    return bot_main(argv)


def _prepare(argv: list[str]) -> int:
    """``avatar-rtc prepare INPUT --name NAME`` (and ``avatar-rtc prepare list``)."""
    from inference.avatar.cli import main as avatar_main

    if argv and argv[0] in ("prepare", "list"):
        return avatar_main(argv)
    if argv and argv[0] in ("-h", "--help"):
        return avatar_main(["prepare", "--help"])
    return avatar_main(["prepare", *argv])


def _render(argv: list[str]) -> int:
    from inference.offline.cli import main as render_main

    return render_main(argv)


_COMMANDS = {
    "serve": _serve,
    "bot": _bot,
    "prepare": _prepare,
    "render": _render,
    "config": _config,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in _COMMANDS:
        names = ", ".join(_COMMANDS)
        print(f"usage: avatar-rtc {{{names}}} [options]   (avatar-rtc COMMAND --help)")
        return 0 if args and args[0] in ("-h", "--help") else 2
    return _COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
