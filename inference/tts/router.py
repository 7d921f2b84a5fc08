"""A TTS that hands each text to the engine of its language ("en" → piper, "zh" → espeak)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from inference.tts.base import Tts
from inference.types import PcmChunk

__all__ = ["LanguageRouterTts"]


class LanguageRouterTts:
    """Routes ``synthesize(text, language)`` to ``engines[language]``.

    A language without an engine goes to ``fallback_language``'s engine, or raises
    ValueError naming the languages served when ``fallback_language`` is None.
    """

    def __init__(self, engines: Mapping[str, Tts], *, fallback_language: str | None = "en") -> None:
        if not engines:
            raise ValueError("LanguageRouterTts needs at least one engine")
        if fallback_language is not None and fallback_language not in engines:
            raise ValueError(f"fallback_language {fallback_language!r} has no engine")
        self._engines = dict(engines)
        self._fallback = fallback_language

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._engines)

    def engine_for(self, language: str) -> Tts:
        """The engine that speaks ``language``."""
        engine = self._engines.get(language)
        if engine is not None:
            return engine
        if self._fallback is None:
            served = ", ".join(self._engines)
            raise ValueError(f"no TTS engine for language {language!r} (served: {served})")
        return self._engines[self._fallback]

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        engine = self.engine_for(language)
        async for chunk in engine.synthesize(text, language):
            yield chunk
