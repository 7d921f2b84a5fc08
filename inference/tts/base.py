"""Text-to-speech stage interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from inference.types import PcmChunk


class Tts(Protocol):
    def synthesize(self, text: str, language: str = "en") -> AsyncIterator[PcmChunk]:
        """Stream mono int16 PCM for ``text``; the last chunk has ``final=True``.

        Blocking synthesis runs off the event loop. Cancelling the iteration stops it.
        """
        ...
