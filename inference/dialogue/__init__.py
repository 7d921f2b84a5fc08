"""Dialogue stage: text in, reply sentences out.

:data:`DIALOGUE_BACKENDS` lists the backends (each module declares its own);
:func:`make_dialogue` builds one from its options. :func:`dialogue_for_call` gives each call
its own view (the LLM backend keeps the call's history there).
The FAQ backend builds its index on creation (~1 s):
create it once per process and share it (it is stateless), or make cheap per-call views with
``FaqDialogue(shared.index, options)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from inference.dialogue import fake, faq, openai_chat
from inference.dialogue.base import Dialogue
from inference.dialogue.fake import ScriptedDialogue, ScriptedDialogueOptions
from inference.dialogue.faq import FaqDialogue, FaqDialogueOptions
from inference.dialogue.openai_chat import OpenAiChatCall, OpenAiChatDialogue, OpenAiChatOptions
from inference.dialogue.sentences import SentenceSplitter, SentenceSplitterOptions, split_sentences
from inference.registry import Registry

__all__ = [
    "DIALOGUE_BACKENDS",
    "Dialogue",
    "FaqDialogue",
    "FaqDialogueOptions",
    "OpenAiChatCall",
    "OpenAiChatDialogue",
    "OpenAiChatOptions",
    "ScriptedDialogue",
    "ScriptedDialogueOptions",
    "SentenceSplitter",
    "SentenceSplitterOptions",
    "dialogue_for_call",
    "make_dialogue",
    "split_sentences",
]

DIALOGUE_BACKENDS: Registry[Dialogue] = Registry(
    "dialogue",
    [
        faq.BACKEND,
        fake.BACKEND,
        openai_chat.BACKEND,
    ],
    default="faq",
)


def make_dialogue(options: object) -> Dialogue:
    """Build the dialogue backend that ``options`` configures."""
    return DIALOGUE_BACKENDS.make(options)


@runtime_checkable
class _PerCall(Protocol):
    def for_call(self) -> Dialogue: ...


def dialogue_for_call(dialogue: Dialogue) -> Dialogue:
    """The view one call should use: ``dialogue.for_call()`` when the backend keeps per-call
    state (the LLM's conversation history), else the shared, stateless ``dialogue`` itself."""
    if isinstance(dialogue, _PerCall):
        return dialogue.for_call()
    return dialogue
