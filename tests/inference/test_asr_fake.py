"""The scripted ASR and the ASR factory."""

from __future__ import annotations

import numpy as np
import pytest

from inference.asr import (
    ASR_BACKENDS,
    OpenAiAsrOptions,
    ScriptedAsr,
    ScriptedAsrOptions,
    WhisperAsr,
    WhisperAsrOptions,
    make_asr,
)
from inference.types import Transcript, Utterance


def _utterance(seconds: float = 0.5) -> Utterance:
    return Utterance(samples=np.zeros(int(16000 * seconds), np.int16), start_s=0.0, end_s=seconds)


async def test_scripted_transcripts_in_order() -> None:
    asr = ScriptedAsr(
        ScriptedAsrOptions(
            transcripts=("hello", Transcript(text="你好", language="zh", confidence=0.5)),
            repeat=False,
        )
    )
    u1, u2 = _utterance(), _utterance(1.0)
    assert await asr.transcribe(u1) == Transcript(text="hello")
    assert await asr.transcribe(u2) == Transcript(text="你好", language="zh", confidence=0.5)
    assert asr.heard == [u1, u2]
    with pytest.raises(RuntimeError, match="used up"):
        await asr.transcribe(u1)


async def test_scripted_repeats_by_default() -> None:
    asr = ScriptedAsr(ScriptedAsrOptions(transcripts=("a", "b")))
    texts = [(await asr.transcribe(_utterance())).text for _ in range(3)]
    assert texts == ["a", "b", "a"]


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="transcripts"):
        ScriptedAsrOptions(transcripts=())
    with pytest.raises(ValueError, match="beam_size"):
        WhisperAsrOptions(beam_size=0)
    with pytest.raises(ValueError, match="device"):
        WhisperAsrOptions(device="tpu")


def test_factory_picks_by_options_type() -> None:
    assert {name: b.options for name, b in ASR_BACKENDS.items()} == {
        "whisper": WhisperAsrOptions,
        "fake": ScriptedAsrOptions,
        "openai": OpenAiAsrOptions,
    }
    assert isinstance(make_asr(ScriptedAsrOptions()), ScriptedAsr)
    assert isinstance(make_asr(WhisperAsrOptions()), WhisperAsr)
    with pytest.raises(TypeError, match="no ASR backend"):
        make_asr(object())  # type: ignore[arg-type]
