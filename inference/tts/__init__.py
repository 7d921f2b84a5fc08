"""Text-to-speech stage: text in, mono int16 PCM chunks out (streamed).

Pick a backend by its options type with :func:`make_tts`; :data:`TTS_BACKENDS` maps
configuration names to those types. Engines load their voice on creation: make them once
per process and share them across calls (they hold no per-call state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inference.registry import build_backend
from inference.tts.base import Tts
from inference.tts.cached import CachedTts, CachedTtsOptions
from inference.tts.espeak import EspeakNotFoundError, EspeakTts, EspeakTtsOptions
from inference.tts.fake import FakeTts, FakeTtsOptions
from inference.tts.openai_http import OpenAiTts, OpenAiTtsOptions
from inference.tts.piper_tts import PiperTts, PiperTtsOptions, TtsVoiceError
from inference.tts.router import LanguageRouterTts

__all__ = [
    "TTS_BACKENDS",
    "CachedTts",
    "CachedTtsOptions",
    "EspeakNotFoundError",
    "EspeakTts",
    "EspeakTtsOptions",
    "FakeTts",
    "FakeTtsOptions",
    "LanguageRouterTts",
    "LanguageRouterTtsOptions",
    "OpenAiTts",
    "OpenAiTtsOptions",
    "PiperTts",
    "PiperTtsOptions",
    "Tts",
    "TtsOptions",
    "TtsVoiceError",
    "make_tts",
]


def _default_routes() -> dict[str, Any]:
    return {"en": PiperTtsOptions(), "zh": EspeakTtsOptions(voice="cmn")}


@dataclass(frozen=True, slots=True, kw_only=True)
class LanguageRouterTtsOptions:
    """``routes`` maps a language to the options of its engine (default: en → piper, zh →
    espeak cmn); unknown languages go to ``fallback_language`` (None: error)."""

    routes: Mapping[str, Any] = field(default_factory=_default_routes)
    fallback_language: str | None = "en"

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("routes must not be empty")
        for language, options in self.routes.items():
            if type(options) not in _FACTORIES or isinstance(options, LanguageRouterTtsOptions):
                raise TypeError(f"route {language!r}: not the options of a TTS engine: {options!r}")
        if self.fallback_language is not None and self.fallback_language not in self.routes:
            raise ValueError(f"fallback_language {self.fallback_language!r} is not routed")


TtsOptions = (
    PiperTtsOptions
    | EspeakTtsOptions
    | FakeTtsOptions
    | LanguageRouterTtsOptions
    | OpenAiTtsOptions
)

TTS_BACKENDS: dict[str, type[TtsOptions]] = {
    "piper": PiperTtsOptions,
    "espeak": EspeakTtsOptions,
    "fake": FakeTtsOptions,
    "router": LanguageRouterTtsOptions,
    "openai": OpenAiTtsOptions,
}


def _make_router(options: LanguageRouterTtsOptions) -> LanguageRouterTts:
    built: dict[Any, Tts] = {}  # the same options routed twice share one engine
    engines = {}
    for language, engine_options in options.routes.items():
        if engine_options not in built:
            built[engine_options] = make_tts(engine_options)
        engines[language] = built[engine_options]
    return LanguageRouterTts(engines, fallback_language=options.fallback_language)


_FACTORIES: dict[type[Any], Callable[[Any], Tts]] = {
    PiperTtsOptions: PiperTts.load,
    EspeakTtsOptions: EspeakTts,
    FakeTtsOptions: FakeTts,
    LanguageRouterTtsOptions: _make_router,
    OpenAiTtsOptions: OpenAiTts,
}


def make_tts(options: TtsOptions) -> Tts:
    """Build the TTS backend that ``options`` configures."""
    return build_backend(_FACTORIES, options, "TTS")
