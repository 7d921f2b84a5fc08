"""Dialogue stage interface: text in, reply sentences out (streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from inference.types import ReplySentence, Transcript

__all__ = ["ConversationMemory", "Dialogue"]


class Dialogue(Protocol):
    def greeting(self, language: str = "en") -> ReplySentence: ...

    def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        """Stream the reply sentence by sentence. Cancelling the iteration stops the work."""
        ...


@runtime_checkable
class ConversationMemory(Protocol):
    """A call's dialogue that remembers the conversation: lines said while a person had the
    call (``role``: ``user`` for the caller, ``assistant`` for what the avatar said) are
    added, so the agent picks up where the person left off."""

    def remember(self, role: str, text: str) -> None: ...
