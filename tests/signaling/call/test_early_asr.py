"""Early ASR: a pause inside speech starts the transcription; voice after it drops it."""

from __future__ import annotations

import asyncio

import numpy as np

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.types import Transcript, Utterance
from signaling.call.early_asr import EarlyAsr, EarlyAsrOptions
from signaling.call.turn import TurnRequest
from tests.signaling.call.test_turn import RecordingRenderer, make_runner


def speech() -> np.ndarray:
    return np.ones(16000, np.int16)


def feed(early: EarlyAsr, pattern: str, *, voiced: int = 10) -> int:
    """Drive the observer with a per-frame pattern: 'v' voiced, '.' silent, '|' speech end."""
    trailing = 0
    for ch in pattern:
        if ch == "|":
            early.observe(speaking=False, voiced=0, trailing=0, speech=speech, now=1.0)
            continue
        if ch == "v":
            voiced += 1
            trailing = 0
        else:
            trailing += 1
        early.observe(speaking=True, voiced=voiced, trailing=trailing, speech=speech, now=1.0)
    return voiced


async def test_pause_starts_one_transcription_that_the_turn_takes() -> None:
    asr = ScriptedAsr(ScriptedAsrOptions(transcripts=("Where is my order?",)))
    early = EarlyAsr(asr, options=EarlyAsrOptions(pause_ms=160))
    feed(early, "vvvv" + "." * 25 + "|")
    assert early.started == 1
    task = early.take()
    assert task is not None
    assert (await task).text == "Where is my order?"
    assert len(asr.heard) == 1 and early.take() is None


async def test_voice_after_the_pause_drops_the_early_attempt() -> None:
    asr = ScriptedAsr(ScriptedAsrOptions(delay_s=0.5))
    early = EarlyAsr(asr, options=EarlyAsrOptions(pause_ms=160))
    feed(early, "vvv" + "." * 8)  # a pause: started
    first = early._task
    assert early.started == 1 and first is not None
    feed(early, "vv", voiced=13)  # the caller goes on speaking
    await asyncio.sleep(0)
    assert first.cancelled()
    assert early.take() is None
    feed(early, "." * 8, voiced=15)  # the next pause starts afresh
    assert early.started == 2
    await early.close()


async def test_turned_off() -> None:
    early = EarlyAsr(ScriptedAsr(ScriptedAsrOptions()), options=EarlyAsrOptions(enabled=False))
    feed(early, "vvv" + "." * 30)
    assert early.started == 0 and early.take() is None


async def test_turn_uses_the_early_transcript_instead_of_asr() -> None:
    runner, _, events, _ = make_runner(RecordingRenderer())
    asr = runner._asr
    assert isinstance(asr, ScriptedAsr)

    async def ready() -> Transcript:
        return Transcript(text="How can I pay?")

    utt = Utterance(samples=np.zeros(16000, np.int16), start_s=9.0, end_s=10.0)
    req = TurnRequest(
        turn=1, speech_end=10.0, utterance=utt, early_transcript=asyncio.ensure_future(ready())
    )
    marks = await runner.run(req)
    assert asr.heard == []  # no second ASR pass
    assert "asr_done" in marks
    assert any(getattr(e, "text", None) == "How can I pay?" for e in events)


async def test_failed_early_transcript_falls_back_to_asr() -> None:
    runner, _, _, _ = make_runner(RecordingRenderer())
    asr = runner._asr
    assert isinstance(asr, ScriptedAsr)

    async def broken() -> Transcript:
        raise RuntimeError("decoder crashed")

    utt = Utterance(samples=np.zeros(16000, np.int16), start_s=9.0, end_s=10.0)
    task = asyncio.ensure_future(broken())
    await asyncio.sleep(0)
    await runner.run(TurnRequest(turn=1, speech_end=10.0, utterance=utt, early_transcript=task))
    assert len(asr.heard) == 1
