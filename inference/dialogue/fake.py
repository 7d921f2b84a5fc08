"""A scripted dialogue for tests: replies from a list, optionally paced like a slow LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

from inference.dialogue.base import Dialogue
from inference.dialogue.sentences import split_sentences
from inference.registry import Backend, BackendSettings
from inference.types import ReplySentence, Transcript

__all__ = ["BACKEND", "ScriptedDialogue", "ScriptedDialogueOptions", "ScriptedDialogueSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedDialogueOptions:
    """``replies`` are said in turn (cycling when ``repeat``), each split into sentences.

    ``sentence_delay_s`` is waited before each sentence (a stand-in for generation time).
    """

    replies: tuple[str, ...] = ("Sure. Let me check that for you.",)
    greeting_text: str = "Hello, how can I help you?"
    language: str = "en"
    sentence_delay_s: float = 0.0
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.replies or not all(r.strip() for r in self.replies):
            raise ValueError("replies must be a non-empty tuple of non-empty texts")
        if self.sentence_delay_s < 0:
            raise ValueError(f"sentence_delay_s must be >= 0, got {self.sentence_delay_s}")


class ScriptedDialogue:
    """Says the scripted replies in order; records what it heard in :attr:`heard`."""

    def __init__(self, options: ScriptedDialogueOptions | None = None) -> None:
        self._options = options or ScriptedDialogueOptions()
        self._turn = 0
        self.heard: list[Transcript] = []

    def greeting(self, language: str = "en") -> ReplySentence:
        return ReplySentence(text=self._options.greeting_text, language=language, index=0)

    async def reply(self, transcript: Transcript) -> AsyncGenerator[ReplySentence, None]:
        """Stream the next scripted reply; raises RuntimeError when the script is used up."""
        opts = self._options
        if self._turn >= len(opts.replies) and not opts.repeat:
            raise RuntimeError(f"ScriptedDialogue: script of {len(opts.replies)} replies used up")
        self.heard.append(transcript)
        text = opts.replies[self._turn % len(opts.replies)]
        self._turn += 1
        for n, sentence in enumerate(split_sentences(text)):
            await asyncio.sleep(opts.sentence_delay_s)
            yield ReplySentence(text=sentence, language=opts.language, index=n)


class ScriptedDialogueSettings(BackendSettings):
    """``dialogue: {backend: fake}``: the default script."""

    backend: Literal["fake"] = "fake"

    def options(self) -> ScriptedDialogueOptions:
        return ScriptedDialogueOptions()


BACKEND: Backend[Dialogue] = Backend(
    name="fake",
    options=ScriptedDialogueOptions,
    make=ScriptedDialogue,
    settings=ScriptedDialogueSettings,
)
