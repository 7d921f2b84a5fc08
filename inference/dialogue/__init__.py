"""Dialogue stage: text in, reply sentences out.

Pick a backend by its options type with :func:`make_dialogue`; :data:`DIALOGUE_BACKENDS` maps
configuration names to those types. :func:`dialogue_for_call` gives each call its own view
(the LLM backend keeps the call's history there).
The FAQ backend builds its index on creation (~1 s):
create it once per process and share it (it is stateless), or make cheap per-call views with
``FaqDialogue(shared.index, options)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from inference.dialogue.base import Dialogue
from inference.dialogue.fake import ScriptedDialogue, ScriptedDialogueOptions
from inference.dialogue.faq import FaqDialogue, FaqDialogueOptions
from inference.dialogue.openai_chat import OpenAiChatCall, OpenAiChatDialogue, OpenAiChatOptions
from inference.dialogue.sentences import SentenceSplitter, SentenceSplitterOptions, split_sentences
from inference.registry import build_backend

__all__ = [
    "DIALOGUE_BACKENDS",
    "Dialogue",
    "DialogueOptions",
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

DialogueOptions = FaqDialogueOptions | ScriptedDialogueOptions | OpenAiChatOptions

DIALOGUE_BACKENDS: dict[str, type[DialogueOptions]] = {
    "faq": FaqDialogueOptions,
    "fake": ScriptedDialogueOptions,
    "openai": OpenAiChatOptions,
}

_FACTORIES: dict[type[Any], Callable[[Any], Dialogue]] = {
    FaqDialogueOptions: FaqDialogue.load,
    ScriptedDialogueOptions: ScriptedDialogue,
    OpenAiChatOptions: OpenAiChatDialogue.load,
}


def make_dialogue(options: DialogueOptions) -> Dialogue:
    """Build the dialogue backend that ``options`` configures."""
    return build_backend(_FACTORIES, options, "dialogue")


@runtime_checkable
class _PerCall(Protocol):
    def for_call(self) -> Dialogue: ...


def dialogue_for_call(dialogue: Dialogue) -> Dialogue:
    """The view one call should use: ``dialogue.for_call()`` when the backend keeps per-call
    state (the LLM's conversation history), else the shared, stateless ``dialogue`` itself."""
    if isinstance(dialogue, _PerCall):
        return dialogue.for_call()
    return dialogue
