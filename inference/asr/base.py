"""Speech recognition stage interface."""

from __future__ import annotations

from typing import Protocol

from inference.types import Transcript, Utterance

__all__ = ["Asr", "AsrModelError"]


class Asr(Protocol):
    """Turns one utterance (16 kHz mono int16) into text. Must not block the event loop.

    ``utterance.language``, when set, is the language the call expects (the page's choice,
    the last turn's): a prior for recognition, never a lock.
    """

    async def transcribe(self, utterance: Utterance) -> Transcript: ...


class AsrModelError(FileNotFoundError):
    """The ASR model is missing or incomplete (the message names the path or package)."""
