"""A call's view of the shared recogniser: it follows the language the caller speaks.

Each utterance goes to the shared ASR stamped with the language the call expects: the page's
choice until the caller is first understood, then the language of the last transcript that
was confident enough. Recognisers take it as a prior, never a lock (see
:class:`~inference.asr.whisper.WhisperAsr`), so a caller who switches language is heard,
and from then on expected, in the new one.
"""

from __future__ import annotations

import dataclasses

from inference.asr.base import Asr
from inference.types import Transcript, Utterance

__all__ = ["CallAsr"]


class CallAsr:
    """Per call, cheap: wraps the process's :class:`~inference.asr.base.Asr`."""

    def __init__(self, asr: Asr, *, language: str | None, min_confidence: float = 0.3) -> None:
        self._asr = asr
        self._min_confidence = min_confidence
        self.language = language  # what the next utterance is expected to be

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """Transcribe with the expected language as a hint; learn the caller's language."""
        if utterance.language is None and self.language is not None:
            utterance = dataclasses.replace(utterance, language=self.language)
        transcript = await self._asr.transcribe(utterance)
        if transcript.text.strip() and transcript.confidence >= self._min_confidence:
            self.language = transcript.language
        return transcript
