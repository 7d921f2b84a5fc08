"""A call's view of the ASR: the page's language first, then the caller's last language."""

from __future__ import annotations

import numpy as np

from inference.asr.call import CallAsr
from inference.types import Transcript, Utterance


class _Recording:
    """An ASR that answers a script and records the hint of each utterance."""

    def __init__(self, *answers: Transcript) -> None:
        self.answers = list(answers)
        self.hints: list[str | None] = []

    async def transcribe(self, utterance: Utterance) -> Transcript:
        self.hints.append(utterance.language)
        return self.answers.pop(0)


def _utt(language: str | None = None) -> Utterance:
    return Utterance(samples=np.zeros(16000, np.int16), start_s=0, end_s=1, language=language)


async def test_the_hint_follows_the_caller() -> None:
    shared = _Recording(
        Transcript(text="我想查一下我的order状态", language="zh", confidence=0.8),
        Transcript(text="", language="en", confidence=0.0),  # silence: no evidence
        Transcript(text="uh", language="en", confidence=0.1),  # unsure: no evidence
        Transcript(text="Where is my order?", language="en", confidence=0.9),
        Transcript(text="Thanks!", language="en", confidence=0.9),
    )
    call = CallAsr(shared, language="en")  # the page said English
    for _ in range(5):
        await call.transcribe(_utt())
    assert shared.hints == ["en", "zh", "zh", "zh", "en"]
    assert call.language == "en"


async def test_an_utterance_that_carries_its_own_hint_keeps_it() -> None:
    shared = _Recording(Transcript(text="你好", language="zh", confidence=0.9))
    await CallAsr(shared, language="en").transcribe(_utt("zh"))
    assert shared.hints == ["zh"]


async def test_no_page_language_means_no_hint() -> None:
    shared = _Recording(Transcript(text="Hello.", language="en", confidence=0.9))
    await CallAsr(shared, language=None).transcribe(_utt())
    assert shared.hints == [None]
