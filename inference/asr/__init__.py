"""Speech recognition stage: one utterance in, one transcript out.

Pick a backend by its options type with :func:`make_asr`; :data:`ASR_BACKENDS` maps
configuration names to those types. ``make_asr(WhisperAsrOptions())`` loads the model: call it
once per process and share the result across calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference.asr.base import Asr
from inference.asr.fake import ScriptedAsr, ScriptedAsrOptions
from inference.asr.openai_http import OpenAiAsr, OpenAiAsrOptions
from inference.asr.whisper import AsrModelError, WhisperAsr, WhisperAsrOptions
from inference.registry import build_backend

__all__ = [
    "ASR_BACKENDS",
    "Asr",
    "AsrModelError",
    "AsrOptions",
    "OpenAiAsr",
    "OpenAiAsrOptions",
    "ScriptedAsr",
    "ScriptedAsrOptions",
    "WhisperAsr",
    "WhisperAsrOptions",
    "make_asr",
]

AsrOptions = WhisperAsrOptions | ScriptedAsrOptions | OpenAiAsrOptions

ASR_BACKENDS: dict[str, type[AsrOptions]] = {
    "whisper": WhisperAsrOptions,
    "fake": ScriptedAsrOptions,
    "openai": OpenAiAsrOptions,
}

_FACTORIES: dict[type[Any], Callable[[Any], Asr]] = {
    WhisperAsrOptions: WhisperAsr.load,
    ScriptedAsrOptions: ScriptedAsr,
    OpenAiAsrOptions: OpenAiAsr,
}


def make_asr(options: AsrOptions) -> Asr:
    """Build the ASR backend that ``options`` configures."""
    return build_backend(_FACTORIES, options, "ASR")
