"""Fallback chains: a remote stage backed by an embedded one while the service is down.

:class:`FallbackAsr` and :class:`FallbackTts` call the primary (say, the OpenAI-compatible
adapter) and, when it raises :class:`~inference.resilience.ServiceUnavailable` (after its own
retries, or at once while its circuit is open), the embedded engine instead. Speech already
streamed from the primary is never repeated: a TTS failure after the first chunk propagates.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from inference.asr.base import Asr
from inference.resilience import ServiceUnavailable
from inference.tts.base import Tts
from inference.types import PcmChunk, Transcript, Utterance

__all__ = ["FallbackAsr", "FallbackTts"]

log = logging.getLogger(__name__)


class FallbackAsr:
    """Transcribe with ``primary``; on ServiceUnavailable with ``fallback``."""

    def __init__(self, primary: Asr, fallback: Asr) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallbacks = 0

    async def transcribe(self, utterance: Utterance) -> Transcript:
        try:
            return await self.primary.transcribe(utterance)
        except ServiceUnavailable as exc:
            self.fallbacks += 1
            log.warning("ASR service unavailable (%s): using the embedded engine", exc)
            return await self.fallback.transcribe(utterance)


class FallbackTts:
    """Synthesize with ``primary``; if it fails before its first chunk, with ``fallback``."""

    def __init__(self, primary: Tts, fallback: Tts) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallbacks = 0

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        started = False
        try:
            async for chunk in self.primary.synthesize(text, language):
                started = True
                yield chunk
            return
        except ServiceUnavailable as exc:
            if started:
                raise
            self.fallbacks += 1
            log.warning("TTS service unavailable (%s): using the embedded engine", exc)
        async for chunk in self.fallback.synthesize(text, language):
            yield chunk
