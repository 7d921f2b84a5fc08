"""The control channel of a stream: JSON lines on a local TCP or Unix socket.

One command per line, one answer per line::

    {"type": "say", "text": "Welcome to the show!"}      -> {"ok": true, "turn": 1}
    {"type": "ask", "text": "Do you ship abroad?"}        (dialogue mode)
    {"type": "audio", "path": "/srv/clip.wav"}            lip-sync given speech
    {"type": "audio", "wav_base64": "UklGR..."}
    {"type": "interrupt"}                                  -> {"ok": true, "dropped_s": 1.2}
    {"type": "avatar", "name": "presenter"}
    {"type": "status"}                                     -> {"ok": true, "speaking": ...}

A bad line gets ``{"ok": false, "error": "..."}`` and the connection stays open. Bind it to
127.0.0.1 or a Unix socket: it has no authentication.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from inference.offline.audio_io import read_audio_file
from inference.offline.errors import AudioInputError
from media.gst.source import SourceError
from signaling.stream.engine import StreamEngine

__all__ = ["ControlServer", "handle_command", "parse_address"]

_MAX_LINE = 16 * 1024 * 1024  # a base64 WAV of a few minutes


def parse_address(address: str) -> tuple[str, int] | Path:
    """``HOST:PORT`` (port 0 picks a free one) or ``unix:PATH``."""
    if address.startswith("unix:"):
        return Path(address[5:])
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"control address {address!r}: use HOST:PORT or unix:PATH")
    return host.strip("[]"), int(port)


async def handle_command(engine: StreamEngine, message: dict[str, Any]) -> dict[str, Any]:
    """Run one command; the answer (``ok`` false with an ``error`` on bad input)."""
    kind = message.get("type")
    try:
        if kind == "say":
            return {"ok": True, "turn": engine.say(str(message.get("text", "")))}
        if kind == "ask":
            return {"ok": True, "turn": engine.ask(str(message.get("text", "")))}
        if kind == "audio":
            pcm = await asyncio.to_thread(_audio, message)
            return {"ok": True, "turn": engine.lipsync(pcm.samples, pcm.rate)}
        if kind == "interrupt":
            return {"ok": True, "dropped_s": round(engine.interrupt(), 3)}
        if kind == "avatar":
            await engine.switch_avatar(str(message.get("name", "")))
            return {"ok": True, "avatar": engine.avatar}
        if kind == "status":
            return {
                "ok": True,
                "avatar": engine.avatar,
                "speaking": engine.speaking,
                "queued_s": round(engine.queued_s, 3),
                "clock_s": round(engine.clock.now(), 3),
                "finished_turns": [turn for turn, _ in engine.said],
            }
    except (ValueError, AudioInputError, SourceError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": False, "error": f"unknown command type {kind!r}"}


def _audio(message: dict[str, Any]) -> Any:
    if "path" in message:
        return read_audio_file(Path(str(message["path"])), max_seconds=600.0)
    if "wav_base64" in message:
        try:
            data = base64.b64decode(str(message["wav_base64"]), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"wav_base64 is not base64: {exc}") from exc
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            f.write(data)
            f.flush()
            return read_audio_file(Path(f.name), max_seconds=600.0)
    raise ValueError("an audio command needs 'path' or 'wav_base64'")


class ControlServer:
    """Serves :func:`handle_command` for one engine on a local socket."""

    def __init__(self, engine: StreamEngine, address: str) -> None:
        self.engine = engine
        self.address = parse_address(address)
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Start listening; returns the address actually bound (``HOST:PORT``/``unix:PATH``)."""
        if isinstance(self.address, Path):
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.address), limit=_MAX_LINE
            )
            return f"unix:{self.address}"
        host, port = self.address
        self._server = await asyncio.start_server(self._client, host, port, limit=_MAX_LINE)
        bound = self._server.sockets[0].getsockname()
        return f"{bound[0]}:{bound[1]}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                    if not isinstance(message, dict):
                        raise ValueError("a command is a JSON object")
                    answer = await handle_command(self.engine, message)
                except ValueError as exc:
                    answer = {"ok": False, "error": f"bad command: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):  # ValueError: too long
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if isinstance(self.address, Path):
            self.address.unlink(missing_ok=True)
