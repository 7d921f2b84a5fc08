"""Dialogue stage interface: text in, reply sentences out (streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from inference.types import ReplySentence, Transcript


class Dialogue(Protocol):
    def greeting(self, language: str = "en") -> ReplySentence: ...

    def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        """Stream the reply sentence by sentence. Cancelling the iteration stops the work."""
        ...
