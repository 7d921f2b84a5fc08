"""Speech recognition stage: one utterance in, one transcript out.

:data:`ASR_BACKENDS` lists the backends (each module declares its own); :func:`make_asr`
builds one from its options. ``make_asr(WhisperAsrOptions())`` loads the model: call it once
per process and share the result across calls; :class:`CallAsr` is a call's cheap view on it
that follows the caller's language.
"""

from __future__ import annotations

from inference.asr import fake, openai_http, whisper
from inference.asr.base import Asr
from inference.asr.call import CallAsr
from inference.asr.fake import ScriptedAsr, ScriptedAsrOptions
from inference.asr.openai_http import OpenAiAsr, OpenAiAsrOptions
from inference.asr.whisper import AsrModelError, WhisperAsr, WhisperAsrOptions
from inference.registry import Registry

__all__ = [
    "ASR_BACKENDS",
    "Asr",
    "AsrModelError",
    "CallAsr",
    "OpenAiAsr",
    "OpenAiAsrOptions",
    "ScriptedAsr",
    "ScriptedAsrOptions",
    "WhisperAsr",
    "WhisperAsrOptions",
    "make_asr",
]

ASR_BACKENDS: Registry[Asr] = Registry(
    "ASR",
    [
        whisper.BACKEND,
        fake.BACKEND,
        openai_http.BACKEND,
    ],
    default="whisper",
)


def make_asr(options: object) -> Asr:
    """Build the ASR backend that ``options`` configures."""
    return ASR_BACKENDS.make(options)
