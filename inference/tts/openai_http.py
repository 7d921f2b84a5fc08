"""TTS over an OpenAI-compatible ``/v1/audio/speech`` (openedai-speech, Kokoro-FastAPI, the
OpenAI API), streamed.

Each sentence of the text is one request (the first sentence's audio starts playing while
the next is synthesized). The answer is read as it arrives: ``response_format="pcm"`` is raw
16-bit little-endian mono at ``pcm_sample_rate``; ``"wav"`` is parsed from its header (a
streamed WAV's unknown sizes are accepted). Audio is yielded every ``chunk_ms``.

A request is retried (backoff, breaker) while no audio of it was yielded yet; a failure
after that raises :class:`ServiceUnavailable` (the turn stops; the call stays up).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field

from inference.dialogue.sentences import split_sentences
from inference.http import HttpError, HttpTimeouts, open_request
from inference.registry import Backend, BackendSettings
from inference.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    ServiceUnavailable,
    backoff_delay,
    is_retryable,
)
from inference.service import ServiceOptions, ServiceSettings
from inference.tts.base import Tts
from inference.tts.piper_tts import PiperTtsSettings
from inference.types import PcmChunk

__all__ = ["BACKEND", "OpenAiTts", "OpenAiTtsOptions", "OpenAiTtsSettings", "WavStreamParser"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAiTtsOptions:
    """``voices`` maps a language to the service's voice name (others use ``voice``)."""

    service: ServiceOptions = field(
        default_factory=lambda: ServiceOptions(
            model="tts-1", timeouts=HttpTimeouts(connect_s=2.0, first_byte_s=8.0, read_s=5.0)
        )
    )
    voice: str = "alloy"
    voices: tuple[tuple[str, str], ...] = ()
    response_format: Literal["pcm", "wav"] = "wav"
    pcm_sample_rate: int = 24000
    speed: float = 1.0
    chunk_ms: int = 200

    def __post_init__(self) -> None:
        if self.response_format not in ("pcm", "wav"):
            raise ValueError(f"response_format must be 'pcm' or 'wav', got {self.response_format}")
        if not 8000 <= self.pcm_sample_rate <= 96000:
            raise ValueError(f"pcm_sample_rate must be 8000..96000, got {self.pcm_sample_rate}")
        if not 0.25 <= self.speed <= 4.0:
            raise ValueError(f"speed must be within 0.25..4, got {self.speed}")
        if not 20 <= self.chunk_ms <= 5000:
            raise ValueError(f"chunk_ms must be within 20..5000, got {self.chunk_ms}")

    @property
    def url(self) -> str:
        return self.service.url("audio/speech")

    def voice_for(self, language: str) -> str:
        return dict(self.voices).get(language, self.voice)


class WavStreamParser:
    """Feed bytes of a (possibly streamed) WAV; get int16 mono samples out as they arrive."""

    def __init__(self) -> None:
        self._buf = b""
        self.sample_rate: int | None = None
        self.channels = 1
        self._in_data = False

    def feed(self, data: bytes) -> np.ndarray:
        self._buf += data
        if not self._in_data:
            self._parse_header()
            if not self._in_data:
                return np.zeros(0, dtype=np.int16)
        frame = 2 * self.channels
        usable = len(self._buf) - len(self._buf) % frame
        raw, self._buf = self._buf[:usable], self._buf[usable:]
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
        return samples

    def _parse_header(self) -> None:
        buf = self._buf
        if len(buf) < 12:
            return
        if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
            raise HttpError("speech answer is not a WAV file (no RIFF/WAVE header)")
        pos = 12
        while pos + 8 <= len(buf):
            cid, size = buf[pos : pos + 4], struct.unpack("<I", buf[pos + 4 : pos + 8])[0]
            if cid == b"data":
                if self.sample_rate is None:
                    raise HttpError("WAV data chunk before its fmt chunk")
                self._buf = buf[pos + 8 :]
                self._in_data = True
                return
            if pos + 8 + size > len(buf):
                return  # wait for the rest of this chunk
            if cid == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", buf[pos + 8 : pos + 24])
                if fmt not in (1, 0xFFFE) or bits != 16:
                    raise HttpError(f"WAV must be 16-bit PCM, got format {fmt} with {bits} bits")
                if channels < 1 or rate <= 0:
                    raise HttpError("WAV header has no channels or no sample rate")
                self.channels, self.sample_rate = channels, rate
            pos += 8 + size + (size & 1)


class OpenAiTts:
    """The :class:`~inference.tts.base.Tts` of a remote speech service (shared per process)."""

    def __init__(self, options: OpenAiTtsOptions | None = None) -> None:
        self.options = options or OpenAiTtsOptions()
        self.breaker = CircuitBreaker(self.options.service.breaker)

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        sentences = split_sentences(text)
        rate = self.options.pcm_sample_rate
        if not sentences:
            yield PcmChunk(np.zeros(0, dtype=np.int16), rate, final=True)
            return
        pending: PcmChunk | None = None  # held back one step so the last can be marked final
        for sentence in sentences:
            async for chunk in self._sentence(sentence, language):
                if pending is not None:
                    yield pending
                pending = chunk
        if pending is None:
            raise ServiceUnavailable("the speech service returned no audio")
        yield PcmChunk(pending.samples, pending.sample_rate, final=True)

    async def _sentence(self, sentence: str, language: str) -> AsyncIterator[PcmChunk]:
        retry = self.options.service.retry
        for attempt in range(retry.attempts):
            if not self.breaker.allow(time.monotonic()):
                raise CircuitOpenError("the speech service's circuit breaker is open")
            yielded = False
            try:
                async for chunk in self._request(sentence, language):
                    yielded = True
                    yield chunk
                self.breaker.record_success(time.monotonic())
                return
            except HttpError as exc:
                if is_retryable(exc):
                    self.breaker.record_failure(time.monotonic())
                if yielded or not is_retryable(exc) or attempt + 1 >= retry.attempts:
                    raise ServiceUnavailable(f"speech service failed: {exc}") from exc
            await asyncio.sleep(backoff_delay(attempt, retry, random.random()))

    async def _request(self, sentence: str, language: str) -> AsyncIterator[PcmChunk]:
        opts = self.options
        payload = {
            "model": opts.service.model,
            "input": sentence,
            "voice": opts.voice_for(language),
            "response_format": opts.response_format,
            "speed": opts.speed,
        }
        headers = {"Accept": "audio/wav" if opts.response_format == "wav" else "audio/pcm"}
        headers.update(opts.service.auth_headers())
        wav = WavStreamParser() if opts.response_format == "wav" else None
        parts: list[np.ndarray] = []
        have = 0
        rate = opts.pcm_sample_rate
        carry = b""
        async with open_request(
            "POST", opts.url, headers=headers, json_body=payload, timeouts=opts.service.timeouts
        ) as resp:
            await resp.raise_for_status()
            async for data in resp.chunks():
                if wav is not None:
                    samples = wav.feed(data)
                    rate = wav.sample_rate or rate
                else:
                    data, carry = carry + data, b""
                    if len(data) % 2:
                        data, carry = data[:-1], data[-1:]
                    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
                if len(samples):
                    parts.append(samples)
                    have += len(samples)
                if have >= rate * opts.chunk_ms // 1000:
                    yield PcmChunk(np.concatenate(parts), rate)
                    parts, have = [], 0
        if wav is not None and wav.sample_rate is None:
            raise HttpError("speech answer ended before the WAV header was complete")
        if parts:
            yield PcmChunk(np.concatenate(parts), rate)


class OpenAiTtsSettings(BackendSettings):
    """``tts: {backend: openai}``: a remote speech service; while it is down
    (``fallback_embedded``), the embedded engine configured under ``embedded`` speaks."""

    backend: Literal["openai"] = "openai"
    service: ServiceSettings = Field(default_factory=lambda: ServiceSettings(model="tts-1"))
    service_voice: str = "alloy"
    service_format: Literal["wav", "pcm"] = "wav"
    service_pcm_rate: int = Field(24000, ge=8000, le=96000)
    fallback_embedded: bool = True
    embedded: PiperTtsSettings = Field(default_factory=PiperTtsSettings)

    def options(self) -> OpenAiTtsOptions:
        return OpenAiTtsOptions(
            service=self.service.options(),
            voice=self.service_voice,
            response_format=self.service_format,
            pcm_sample_rate=self.service_pcm_rate,
        )

    def fallback_section(self) -> PiperTtsSettings | None:
        return self.embedded if self.fallback_embedded else None


BACKEND: Backend[Tts] = Backend(
    name="openai", options=OpenAiTtsOptions, make=OpenAiTts, settings=OpenAiTtsSettings
)
