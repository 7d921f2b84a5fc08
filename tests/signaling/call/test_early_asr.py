"""Early ASR: a pause inside speech starts the transcription; voice after it drops it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.types import Transcript, Utterance
from media.vad import Segmenter, UtteranceReady
from signaling.call.early_asr import EarlyAsr, EarlyAsrOptions, reads_finished
from signaling.call.events import ReplyText, StateChanged, TranscriptEvent
from signaling.call.turn import TurnRequest
from tests.media.test_vad import silence, voice
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


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("Where is my order?", True),
        ("I'd like a refund.", True),
        ("你们几点开门？", True),
        ("能换一个颜色吗", True),
        ("我想查一下我的order状态。", True),
        ("I want to", False),
        ("I want to.", False),
        ("Where is my order and", False),
        ("Well...", False),
        ("我想查一下因为", False),
        ("我想查一下", False),  # no mark, no final particle: maybe more to come
        ("发货要多久", True),  # unpunctuated, but it ends on its question word
        ("你们的营业时间是什么时候", True),
        ("这个多少钱", True),
        ("我该怎么", False),
        ("", False),
    ],
)
def test_reads_finished(text: str, finished: bool) -> None:
    assert reads_finished(text) is finished


async def _drive(early: EarlyAsr, audio: np.ndarray) -> tuple[UtteranceReady, float]:
    """Feed ``audio`` frame by frame as the session does (the early transcription, and the end
    of turn it allows); the utterance and the clock time it ended at."""
    seg = Segmenter()
    for i in range(len(audio) // 320):
        now = 10.0 + (i + 1) * 0.02
        events = seg.push(audio[i * 320 : (i + 1) * 320], now)
        early.observe(
            speaking=seg.speaking,
            voiced=seg.voiced_frames,
            trailing=seg.trailing_silence_frames,
            speech=seg.current_speech,
            now=now,
        )
        await asyncio.sleep(0)  # the scripted transcription finishes at once
        if early.turn_over(speaking=seg.speaking, trailing=seg.trailing_silence_frames):
            events += seg.end_now(now)
        for event in events:
            if isinstance(event, UtteranceReady):
                return event, now
    raise AssertionError("the utterance never ended")


def _speech_then_silence() -> np.ndarray:
    return np.concatenate([silence(0.5), voice(1.0), silence(1.0)])


@pytest.mark.parametrize(
    ("heard", "sooner_s"),
    [
        (Transcript(text="Where is my order?", confidence=0.9), 0.2),  # finished: 300 ms
        (Transcript(text="Where is my order and", confidence=0.9), 0.0),  # unfinished: waits
        (Transcript(text="Where is my order?", confidence=0.2), 0.0),  # unsure: waits
    ],
)
async def test_a_finished_confident_early_transcript_ends_the_turn_sooner(
    heard: Transcript, sooner_s: float
) -> None:
    script = ScriptedAsrOptions(transcripts=(heard,))
    off = EarlyAsr(ScriptedAsr(script), options=EarlyAsrOptions(end_after_ms=0))
    full, full_end = await _drive(off, _speech_then_silence())  # the segmenter's 500 ms
    early = EarlyAsr(ScriptedAsr(script))
    utt, ended_at = await _drive(early, _speech_then_silence())
    assert full_end - ended_at == pytest.approx(sooner_s, abs=0.01)
    assert utt.end_s == pytest.approx(full.end_s, abs=0.021)  # the same speech either way
    task = early.take()
    assert task is not None and (await task) == heard  # the turn starts from it
    assert early.started == 1


async def test_an_empty_early_transcript_sends_the_call_back_to_listening() -> None:
    runner, player, events, _ = make_runner(RecordingRenderer())

    async def nothing_heard() -> Transcript:
        return Transcript(text="", confidence=0.0)  # silence, music: nothing to answer

    utt = Utterance(samples=np.zeros(16000, np.int16), start_s=9.0, end_s=10.0)
    task = asyncio.ensure_future(nothing_heard())
    await runner.run(TurnRequest(turn=1, speech_end=10.0, utterance=utt, early_transcript=task))
    assert [e.state for e in events if isinstance(e, StateChanged)] == ["listening"]
    assert not any(isinstance(e, (TranscriptEvent, ReplyText)) for e in events)
    assert player.busy_until <= 10.0
