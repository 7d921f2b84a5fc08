"""ASR over an OpenAI-compatible ``/v1/audio/transcriptions`` (faster-whisper-server, vLLM,
whisper.cpp server, the OpenAI API).

The utterance goes up as a 16-bit WAV in a multipart form; the JSON answer's ``text`` (and
``language`` when the service reports it) comes back as a :class:`Transcript`. The request
is idempotent, so transport failures, timeouts, 429 and 5xx are retried with backoff; a
circuit breaker fails fast while the service is down (:class:`ServiceUnavailable`).
"""

from __future__ import annotations

import io
import time
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from inference.asr.base import Asr
from inference.asr.whisper import WhisperAsrSettings
from inference.dialogue.text import detect_language
from inference.http import HttpError, HttpTimeouts, open_request
from inference.registry import Backend, BackendSettings
from inference.resilience import CircuitBreaker, ServiceUnavailable, retry
from inference.service import ServiceOptions, ServiceSettings
from inference.types import Transcript, Utterance

__all__ = [
    "BACKEND",
    "OpenAiAsr",
    "OpenAiAsrOptions",
    "OpenAiAsrSettings",
    "encode_wav",
    "multipart_form",
]

_LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "mandarin": "zh"}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAiAsrOptions:
    """``service.base_url`` ends before ``/audio/transcriptions``; ``language`` None lets the
    service detect it."""

    service: ServiceOptions = field(
        default_factory=lambda: ServiceOptions(
            model="whisper-1", timeouts=HttpTimeouts(connect_s=2.0, first_byte_s=8.0, read_s=5.0)
        )
    )
    language: str | None = "en"
    prompt: str | None = None

    @property
    def url(self) -> str:
        return self.service.url("audio/transcriptions")


def encode_wav(utterance: Utterance) -> bytes:
    """The utterance as a mono 16-bit WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(utterance.sample_rate)
        w.writeframes(utterance.samples.astype("<i2").tobytes())
    return buf.getvalue()


def multipart_form(
    fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request; files are
    ``name -> (filename, content_type, data)``."""
    boundary = f"avatar-rtc-{uuid.uuid4().hex}"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode("utf-8") + b"\r\n")
    for name, (filename, ctype, data) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class OpenAiAsr:
    """The :class:`~inference.asr.base.Asr` of a remote transcription service (shared per
    process: it holds only the options and the breaker)."""

    def __init__(self, options: OpenAiAsrOptions | None = None) -> None:
        self.options = options or OpenAiAsrOptions()
        self.breaker = CircuitBreaker(self.options.service.breaker)

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """Transcribe; ServiceUnavailable when the service cannot answer after retries."""
        opts = self.options
        fields = {"model": opts.service.model, "response_format": "json"}
        if opts.language:
            fields["language"] = opts.language
        if opts.prompt:
            fields["prompt"] = opts.prompt
        body, ctype = multipart_form(
            fields, {"file": ("speech.wav", "audio/wav", encode_wav(utterance))}
        )
        headers = {"Content-Type": ctype, "Accept": "application/json"}
        headers.update(opts.service.auth_headers())

        async def once() -> Any:
            async with open_request(
                "POST", opts.url, headers=headers, body=body, timeouts=opts.service.timeouts
            ) as resp:
                await resp.raise_for_status()
                return await resp.json()

        try:
            answer = await retry(once, opts.service.retry, breaker=self.breaker, now=time.monotonic)
        except HttpError as exc:
            raise ServiceUnavailable(f"transcription service failed: {exc}") from exc
        return self._transcript(answer, utterance.language)

    def _transcript(self, answer: Any, expected: str | None = None) -> Transcript:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ServiceUnavailable(f"transcription answer without 'text': {str(answer)[:100]}")
        text = answer["text"].strip()
        reported = str(answer.get("language") or "").lower()
        language = _LANGUAGE_NAMES.get(reported, reported)
        if language not in ("en", "zh"):
            language = detect_language(text, default=self.options.language or expected or "en")
        return Transcript(text=text, language=language)


class OpenAiAsrSettings(BackendSettings):
    """``asr: {backend: openai}``: a remote transcription service; while it is down
    (``fallback_embedded``), the embedded engine configured under ``embedded`` transcribes."""

    backend: Literal["openai"] = "openai"
    language: str | None = "en"
    service: ServiceSettings = Field(default_factory=lambda: ServiceSettings(model="whisper-1"))
    fallback_embedded: bool = True
    embedded: WhisperAsrSettings = Field(default_factory=WhisperAsrSettings)

    def options(self) -> OpenAiAsrOptions:
        return OpenAiAsrOptions(service=self.service.options(), language=self.language)

    def fallback_section(self) -> WhisperAsrSettings | None:
        if not self.fallback_embedded:
            return None
        if "language" in self.embedded.model_fields_set:
            return self.embedded
        return self.embedded.model_copy(update={"language": self.language})


BACKEND: Backend[Asr] = Backend(
    name="openai", options=OpenAiAsrOptions, make=OpenAiAsr, settings=OpenAiAsrSettings
)
