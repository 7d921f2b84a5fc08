"""Text-to-speech stage: text in, mono int16 PCM chunks out (streamed).

:data:`TTS_BACKENDS` lists the backends (each module declares its own); :func:`make_tts`
builds one from its options (``TTS_BACKENDS.default_section().options()``: the default
bilingual voices, piper for English and Kokoro for Mandarin). Engines load their voice on
creation: make them once per process and share them across calls (they hold no per-call
state).
"""

from __future__ import annotations

from inference.registry import Registry
from inference.tts import espeak, fake, kokoro_zh, openai_http, piper_tts, router
from inference.tts.base import Tts
from inference.tts.cached import CachedTts, CachedTtsOptions
from inference.tts.espeak import EspeakNotFoundError, EspeakTts, EspeakTtsOptions
from inference.tts.fake import FakeTts, FakeTtsOptions
from inference.tts.kokoro_zh import KokoroZhTts, KokoroZhTtsOptions
from inference.tts.openai_http import OpenAiTts, OpenAiTtsOptions
from inference.tts.piper_tts import PiperTts, PiperTtsOptions, TtsVoiceError
from inference.tts.router import LanguageRouterTts, LanguageRouterTtsOptions

__all__ = [
    "TTS_BACKENDS",
    "CachedTts",
    "CachedTtsOptions",
    "EspeakNotFoundError",
    "EspeakTts",
    "EspeakTtsOptions",
    "FakeTts",
    "FakeTtsOptions",
    "KokoroZhTts",
    "KokoroZhTtsOptions",
    "LanguageRouterTts",
    "LanguageRouterTtsOptions",
    "OpenAiTts",
    "OpenAiTtsOptions",
    "PiperTts",
    "PiperTtsOptions",
    "Tts",
    "TtsVoiceError",
    "make_tts",
]


def make_tts(options: object) -> Tts:
    """Build the TTS backend that ``options`` configures."""
    return TTS_BACKENDS.make(options)


TTS_BACKENDS: Registry[Tts] = Registry(
    "TTS",
    [
        piper_tts.BACKEND,
        espeak.BACKEND,
        fake.BACKEND,
        openai_http.BACKEND,
        kokoro_zh.BACKEND,
        router.backend(make_route=make_tts),
    ],
    default="piper",
)
