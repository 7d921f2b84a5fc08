"""A TTS that hands each text to the engine of its language (say "en" → piper, "zh" → Kokoro).

It is built from options only: the ``piper`` configuration section routes Mandarin to Kokoro
(or espeak-ng) through it. Each route is built by the function the registry entry is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inference.registry import Backend
from inference.tts.base import Tts
from inference.types import PcmChunk

__all__ = ["LanguageRouterTts", "LanguageRouterTtsOptions", "backend"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LanguageRouterTtsOptions:
    """``routes`` maps a language to the options of its engine; unknown languages go to
    ``fallback_language`` (None: error)."""

    routes: Mapping[str, Any]
    fallback_language: str | None = "en"

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("routes must not be empty")
        for language, options in self.routes.items():
            is_options = dataclasses.is_dataclass(options) and not isinstance(options, type)
            if not is_options or isinstance(options, LanguageRouterTtsOptions):
                raise TypeError(f"route {language!r}: not the options of a TTS engine: {options!r}")
        if self.fallback_language is not None and self.fallback_language not in self.routes:
            raise ValueError(f"fallback_language {self.fallback_language!r} is not routed")


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


def backend(make_route: Callable[[Any], Tts]) -> Backend[Tts]:
    """The router's registry entry; ``make_route`` builds each route's engine (the same
    options routed twice share one engine)."""

    def make(options: LanguageRouterTtsOptions) -> LanguageRouterTts:
        built: dict[Any, Tts] = {}
        engines = {}
        for language, engine_options in options.routes.items():
            if engine_options not in built:
                built[engine_options] = make_route(engine_options)
            engines[language] = built[engine_options]
        return LanguageRouterTts(engines, fallback_language=options.fallback_language)

    return Backend(name="router", options=LanguageRouterTtsOptions, make=make)
