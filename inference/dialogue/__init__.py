"""Dialogue stage: text in, reply sentences out.

Pick a backend by its options type with :func:`make_dialogue`; :data:`DIALOGUE_BACKENDS` maps
configuration names to those types. The FAQ backend builds its index on creation (~1 s):
create it once per process and share it (it is stateless), or make cheap per-call views with
``FaqDialogue(shared.index, options)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference.dialogue.base import Dialogue
from inference.dialogue.fake import ScriptedDialogue, ScriptedDialogueOptions
from inference.dialogue.faq import FaqDialogue, FaqDialogueOptions
from inference.dialogue.sentences import SentenceSplitter, SentenceSplitterOptions, split_sentences

__all__ = [
    "DIALOGUE_BACKENDS",
    "Dialogue",
    "DialogueOptions",
    "FaqDialogue",
    "FaqDialogueOptions",
    "ScriptedDialogue",
    "ScriptedDialogueOptions",
    "SentenceSplitter",
    "SentenceSplitterOptions",
    "make_dialogue",
    "split_sentences",
]

DialogueOptions = FaqDialogueOptions | ScriptedDialogueOptions

DIALOGUE_BACKENDS: dict[str, type[DialogueOptions]] = {
    "faq": FaqDialogueOptions,
    "fake": ScriptedDialogueOptions,
}

_FACTORIES: dict[type[Any], Callable[[Any], Dialogue]] = {
    FaqDialogueOptions: FaqDialogue.load,
    ScriptedDialogueOptions: ScriptedDialogue,
}


def make_dialogue(options: DialogueOptions) -> Dialogue:
    """Build the dialogue backend that ``options`` configures."""
    try:
        factory = _FACTORIES[type(options)]
    except KeyError:
        known = ", ".join(t.__name__ for t in _FACTORIES)
        name = type(options).__name__
        raise TypeError(f"no dialogue backend for {name}; known: {known}") from None
    return factory(options)
