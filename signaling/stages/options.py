"""Settings → the stages' own options objects (the settings stop here).

Each function reads one section of :class:`~signaling.config.Settings` and returns the options
dataclass of the backend it names; the stage factories (``make_asr``, ``make_dialogue``,
``make_tts``) then build the backend from those options.
"""

from __future__ import annotations

from typing import Any

from inference.asr import (
    AsrOptions,
    OpenAiAsrOptions,
    ScriptedAsrOptions,
    WhisperAsrOptions,
)
from inference.dialogue import (
    DialogueOptions,
    FaqDialogueOptions,
    OpenAiChatOptions,
    ScriptedDialogueOptions,
)
from inference.dialogue.openai_chat import DEFAULT_PERSONA, DEFAULT_SYSTEM_PROMPT
from inference.http import HttpTimeouts
from inference.resilience import BreakerOptions, RetryOptions
from inference.tts import (
    EspeakTtsOptions,
    FakeTtsOptions,
    LanguageRouterTtsOptions,
    OpenAiTtsOptions,
    PiperTtsOptions,
    TtsOptions,
)
from media.vad import SegmenterOptions
from signaling.config import ServiceSettings, Settings

__all__ = [
    "asr_options",
    "dialogue_options",
    "embedded_asr_options",
    "embedded_tts_options",
    "segmenter_options",
    "tts_options",
]


def _timeouts(s: ServiceSettings) -> HttpTimeouts:
    return HttpTimeouts(
        connect_s=s.connect_timeout_s, first_byte_s=s.first_byte_timeout_s, read_s=s.read_timeout_s
    )


def _resilience(s: ServiceSettings) -> dict[str, Any]:
    """Timeouts, retries and circuit breaker of a service adapter, from its settings."""
    return {
        "timeouts": _timeouts(s),
        "retry": RetryOptions(attempts=s.attempts),
        "breaker": BreakerOptions(
            failure_threshold=s.breaker_failures, reset_after_s=s.breaker_reset_s
        ),
    }


def _api_key(s: ServiceSettings) -> str | None:
    return s.api_key.get_secret_value() if s.api_key is not None else None


def asr_options(settings: Settings) -> AsrOptions:
    a = settings.asr
    if a.backend == "fake":
        return ScriptedAsrOptions()
    if a.backend == "openai":
        return OpenAiAsrOptions(
            base_url=a.service.base_url,
            model=a.service.model,
            api_key=_api_key(a.service),
            language=a.language,
            **_resilience(a.service),
        )
    return embedded_asr_options(settings)


def embedded_asr_options(settings: Settings) -> WhisperAsrOptions:
    return WhisperAsrOptions(model_dir=settings.asr.model_dir, language=settings.asr.language)


def dialogue_options(settings: Settings) -> DialogueOptions:
    d = settings.dialogue
    if d.backend == "fake":
        return ScriptedDialogueOptions()
    if d.backend == "openai":
        return OpenAiChatOptions(
            base_url=d.service.base_url,
            model=d.service.model,
            api_key=_api_key(d.service),
            persona=d.persona if d.persona is not None else DEFAULT_PERSONA,
            system_prompt=d.system_prompt if d.system_prompt is not None else DEFAULT_SYSTEM_PROMPT,
            kb_path=d.knowledge_base,
            kb_top_k=d.kb_top_k,
            history_tokens=d.history_tokens,
            max_tokens=d.max_tokens,
            temperature=d.temperature,
            **_resilience(d.service),
        )
    if d.knowledge_base is not None:
        return FaqDialogueOptions(kb_path=d.knowledge_base)
    return FaqDialogueOptions()


def tts_options(settings: Settings) -> TtsOptions:
    t = settings.tts
    if t.backend == "fake":
        return FakeTtsOptions()
    if t.backend == "openai":
        return OpenAiTtsOptions(
            base_url=t.service.base_url,
            model=t.service.model,
            voice=t.service_voice,
            api_key=_api_key(t.service),
            response_format=t.service_format,
            pcm_sample_rate=t.service_pcm_rate,
            **_resilience(t.service),
        )
    return embedded_tts_options(settings)


def embedded_tts_options(settings: Settings) -> LanguageRouterTtsOptions:
    t = settings.tts
    piper = PiperTtsOptions(
        voice=t.voice,
        noise_scale=t.noise_scale,
        noise_w_scale=t.noise_w_scale,
        length_scale=t.length_scale,
    )
    return LanguageRouterTtsOptions(routes={"en": piper, "zh": EspeakTtsOptions(voice=t.zh_voice)})


def segmenter_options(settings: Settings) -> SegmenterOptions:
    m = settings.media
    return SegmenterOptions(
        aggressiveness=m.vad_aggressiveness,
        end_silence_ms=m.end_silence_ms,
        min_utterance_s=m.min_utterance_s,
        max_segment_s=m.max_segment_s,
    )
