"""The scripted dialogue and the dialogue factory."""

from __future__ import annotations

import time

import pytest

from inference.dialogue import (
    DIALOGUE_BACKENDS,
    FaqDialogueOptions,
    OpenAiChatOptions,
    ScriptedDialogue,
    ScriptedDialogueOptions,
    make_dialogue,
)
from inference.types import Transcript


async def test_scripted_replies_in_order_and_split() -> None:
    dialogue = ScriptedDialogue(
        ScriptedDialogueOptions(replies=("One. Two!", "三。四？"), language="en", repeat=False)
    )
    first = [s async for s in dialogue.reply(Transcript(text="a"))]
    assert [(s.text, s.index) for s in first] == [("One.", 0), ("Two!", 1)]
    second = [s.text async for s in dialogue.reply(Transcript(text="b"))]
    assert second == ["三。", "四？"]
    assert [t.text for t in dialogue.heard] == ["a", "b"]
    with pytest.raises(RuntimeError, match="used up"):
        [s async for s in dialogue.reply(Transcript(text="c"))]


async def test_scripted_repeat_and_delay() -> None:
    dialogue = ScriptedDialogue(
        ScriptedDialogueOptions(replies=("Yes. Right.",), sentence_delay_s=0.02, repeat=True)
    )
    start = time.perf_counter()
    for _ in range(2):
        assert [s.text async for s in dialogue.reply(Transcript(text="x"))] == ["Yes.", "Right."]
    assert time.perf_counter() - start >= 0.07


def test_scripted_greeting_and_validation() -> None:
    dialogue = ScriptedDialogue(ScriptedDialogueOptions(greeting_text="Hey"))
    assert dialogue.greeting("zh").text == "Hey"
    assert dialogue.greeting("zh").language == "zh"
    with pytest.raises(ValueError, match="replies"):
        ScriptedDialogueOptions(replies=())
    with pytest.raises(ValueError, match="sentence_delay_s"):
        ScriptedDialogueOptions(sentence_delay_s=-1)


def test_factory_picks_by_options_type() -> None:
    assert {name: b.options for name, b in DIALOGUE_BACKENDS.items()} == {
        "faq": FaqDialogueOptions,
        "fake": ScriptedDialogueOptions,
        "openai": OpenAiChatOptions,
    }
    assert isinstance(make_dialogue(ScriptedDialogueOptions()), ScriptedDialogue)
    with pytest.raises(TypeError, match="no dialogue backend for str"):
        make_dialogue("faq")  # type: ignore[arg-type]
