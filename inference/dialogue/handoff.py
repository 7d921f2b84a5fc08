"""Handing a call to a person: spotting a request for one, and :class:`HandoffGuard`, the
per-call dialogue wrapper that hands off when the caller asks for a person again and the
backend did not (an LLM that kept answering, a knowledge base without a handoff entry).

A reply that hands off carries ``intent="handoff"`` on its sentences (see
:class:`~inference.types.ReplySentence`); the call runtime acts on it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inference.dialogue.base import Dialogue
from inference.dialogue.text import detect_language
from inference.types import ReplySentence, Transcript

__all__ = ["DEFAULT_HANDOFF_LINES", "HandoffGuard", "HandoffGuardOptions", "asks_for_person"]

DEFAULT_HANDOFF_LINES: tuple[tuple[str, str], ...] = (
    ("en", "Of course. Let me put you through to one of our team now."),
    ("zh", "好的，我这就为您转接人工客服。"),
)

_ENGLISH = re.compile(
    r"\b(human|operator|representative|real person|live (agent|person)"
    r"|(speak|talk|chat)\s+(to|with)\s+(a|an|the|some|your|one of your)?\s*"
    r"(person|agent|someone|somebody|people|staff)"
    r"|(transfer|connect|put)\s+me\b)",
    re.IGNORECASE,
)
_CHINESE = re.compile("人工|真人|转接|接线员|客服人员|找人")


def asks_for_person(text: str) -> bool:
    """Whether ``text`` asks to speak to a person (English or Chinese phrasings)."""
    return bool(_ENGLISH.search(text) or _CHINESE.search(text))


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffGuardOptions:
    """``asks``: the request for a person that hands off even when the dialogue does not
    (2: the second one); ``lines``: what is said then, per language."""

    asks: int = 2
    lines: tuple[tuple[str, str], ...] = DEFAULT_HANDOFF_LINES

    def __post_init__(self) -> None:
        if self.asks < 1:
            raise ValueError(f"asks must be >= 1, got {self.asks}")
        if not dict(self.lines).get("en", "").strip():
            raise ValueError("lines must map at least 'en' to a non-empty line")

    def line(self, language: str) -> str:
        lines = dict(self.lines)
        return lines.get(language) or lines["en"]


class HandoffGuard:
    """One call's dialogue, wrapped: counts the caller's requests for a person and answers
    the ``asks``-th with the handoff line; a reply that hands off by itself starts over."""

    def __init__(self, inner: Dialogue, options: HandoffGuardOptions | None = None) -> None:
        self.inner = inner
        self.options = options or HandoffGuardOptions()
        self.asked = 0

    def greeting(self, language: str = "en") -> ReplySentence:
        return self.inner.greeting(language)

    async def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        if asks_for_person(transcript.text):
            self.asked += 1
        if self.asked >= self.options.asks:
            self.asked = 0
            language = detect_language(transcript.text, default=transcript.language)
            yield ReplySentence(
                text=self.options.line(language), language=language, intent="handoff"
            )
            return
        async for sentence in self.inner.reply(transcript):
            if sentence.intent == "handoff":
                self.asked = 0
            yield sentence
