"""A fake OpenAI-compatible server on 127.0.0.1 with injectable faults (tests, benchmarks).

Speaks ``POST /v1/chat/completions`` (SSE stream, word by word), ``/v1/audio/transcriptions``
(multipart; answers a scripted text) and ``/v1/audio/speech`` (WAV or raw PCM of the fake
TTS's deterministic speech). Each request takes the next :class:`Fault` queued for its
endpoint (none: a normal answer): an HTTP status, a slow first byte, a stream cut after some
characters, a malformed chunk.
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from inference.tts.fake import FakeTtsOptions, fake_speech

__all__ = ["FakeOpenAi", "Fault"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """``status``: answer this HTTP status; ``delay_s``: wait before the first byte;
    ``cut_after``: close the connection after this many characters (chat) or bytes (speech);
    ``malformed_after``: send a broken chunk after this many deltas."""

    status: int | None = None
    delay_s: float = 0.0
    cut_after: int | None = None
    malformed_after: int | None = None


@dataclass
class FakeOpenAi:
    """The server; ``await start()`` returns the base URL (``http://127.0.0.1:PORT/v1``)."""

    reply: Callable[[list[dict[str, str]]], str] = lambda messages: (
        "Our store opens at nine. We close at six on weekdays, and at four on Saturdays."
    )
    transcript: str = "What are your opening hours?"
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    disconnects: int = 0
    _runner: web.AppRunner | None = None

    def fail(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for ``chat``, ``transcriptions`` or ``speech``."""
        self.faults.setdefault(endpoint, deque()).extend(faults)

    def _next_fault(self, endpoint: str) -> Fault:
        queue = self.faults.get(endpoint)
        return queue.popleft() if queue else Fault()

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server: Any = site._server
        bound = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{bound}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("chat", body))
        fault = self._next_fault("chat")
        await asyncio.sleep(fault.delay_s + self.first_token_delay_s)
        if fault.status is not None:
            return web.json_response({"error": {"message": "injected"}}, status=fault.status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        text = self.reply(body["messages"])
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
        sent = 0
        try:
            await resp.write(b": keep-alive\n\n")
            for n, word in enumerate(words):
                if fault.malformed_after is not None and n == fault.malformed_after:
                    await resp.write(b'data: {"choices": [{"delta": {"content": \n\n')
                    continue
                if fault.cut_after is not None and sent + len(word) > fault.cut_after:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                sent += len(word)
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return resp

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        audio = form.get("file")
        size = len(audio.file.read()) if isinstance(audio, web.FileField) else 0
        self.requests.append(
            ("transcriptions", {**{k: str(v) for k, v in form.items()}, "n": size})
        )
        fault = self._next_fault("transcriptions")
        await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            return web.json_response({"error": "injected"}, status=fault.status)
        return web.json_response({"text": self.transcript})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("speech", body))
        fault = self._next_fault("speech")
        await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            return web.json_response({"error": "injected"}, status=fault.status)
        samples = fake_speech(body["input"], FakeTtsOptions(sample_rate=24000))
        if body.get("response_format") == "pcm":
            data = samples.astype("<i2").tobytes()
        else:
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(24000)
                w.writeframes(samples.astype("<i2").tobytes())
            data = buf.getvalue()
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        step = 4096
        for start in range(0, len(data), step):
            if fault.cut_after is not None and start >= fault.cut_after:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(data[start : start + step])
        await resp.write_eof()
        return resp
