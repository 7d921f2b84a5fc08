"""Speech recognition stage interface."""

from __future__ import annotations

from typing import Protocol

from inference.types import Transcript, Utterance


class Asr(Protocol):
    """Turns one utterance (16 kHz mono int16) into text. Must not block the event loop."""

    async def transcribe(self, utterance: Utterance) -> Transcript: ...
