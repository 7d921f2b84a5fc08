"""The ``avatar-rtc`` command: serve, bot, prepare, render, config, calls, kb, stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signaling.config import Settings
    from signaling.server.tls import ServerTls

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
    _add_tls_flags(parser)
    args = parser.parse_args(argv)
    if args.self_signed and (args.tls_cert or args.tls_key):
        parser.error("--self-signed or --tls-cert/--tls-key, not both")

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
    if tls := _tls_overrides(args):
        overrides["tls"] = tls
    try:
        settings = load_settings(args.config, overrides)
        check_startup(settings)
        https = _server_tls(settings)
    except ConfigError as exc:
        print(f"avatar-rtc: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, level=settings.log_level.upper())
    get_logger("avatar_rtc").info("configuration", config=settings.masked())
    app = create_app(settings)
    if https is None:
        print(f"avatar-rtc: serving on http://{settings.host}:{settings.port}/", flush=True)
    else:
        print(*https.banner(bind_host=settings.host, port=settings.port), sep="\n", flush=True)
    context = https.context if https is not None else None
    asyncio.run(serve(app, settings.host, settings.port, ssl_context=context))
    return 0


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTPS (browsers give the microphone only to https pages)")
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="certificate (PEM)")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    group.add_argument(
        "--self-signed",
        action="store_true",
        help="a self-signed certificate for this host's addresses (LAN trials)",
    )


def _tls_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``tls`` section the flags set (the flags replace the file's choice)."""
    if args.self_signed:
        return {"self_signed": True, "cert": None, "key": None}
    files = {"cert": args.tls_cert, "key": args.tls_key}
    given = {key: path for key, path in files.items() if path is not None}
    return {**given, "self_signed": False} if given else {}


def _server_tls(settings: Settings) -> ServerTls | None:
    """The HTTPS context the settings ask for (a self-signed pair made first), or None."""
    from signaling.server.tls import server_tls, tls_options

    options = tls_options(settings)
    return None if options is None else server_tls(options, bind_host=settings.host)


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


def _calls(argv: list[str]) -> int:
    from signaling.records.export import main as calls_main

    return calls_main(argv)


def _render(argv: list[str]) -> int:
    from inference.offline.cli import main as render_main

    return render_main(argv)


def _stream(argv: list[str]) -> int:
    from signaling.stream.cli import main as stream_main

    return stream_main(argv)


def _kb(argv: list[str]) -> int:
    from inference.dialogue.kb_cli import main as kb_main

    return kb_main(argv)


_COMMANDS = {
    "serve": _serve,
    "bot": _bot,
    "prepare": _prepare,
    "render": _render,
    "config": _config,
    "calls": _calls,
    "kb": _kb,
    "stream": _stream,
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
