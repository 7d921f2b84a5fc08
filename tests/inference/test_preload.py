"""Preloading and speculative prefetch: a reply turn afterwards finds speech and clips cached."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from stage_fakes import CountingRenderer, ListSink

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.cache import CacheOptions, TieredCache
from inference.dialogue import FaqDialogue, FaqDialogueOptions
from inference.dialogue.faq import FaqIndex
from inference.preload import (
    PrefetchOptions,
    Preloader,
    PreloadOptions,
    SpeculatingDialogue,
    SpeculativePrefetcher,
    faq_predictor,
    preload_lines,
    warm,
)
from inference.render.cached import CachedRenderer, CachedRendererOptions
from inference.tts import CachedTts, CachedTtsOptions, FakeTts, FakeTtsOptions
from inference.types import ReplySentence, Transcript
from inference.work import (
    FairExecutor,
    FairExecutorOptions,
    LaneClosed,
    WorkLane,
    current_lane,
    run_blocking,
)
from signaling.call.turn import TurnRequest, TurnRunner


@pytest.fixture(scope="module")
def faq() -> FaqDialogue:
    return FaqDialogue(FaqIndex.load(), FaqDialogueOptions())


def _stack(cache: TieredCache) -> tuple[FakeTts, CachedTts, CountingRenderer, CachedRenderer]:
    inner_tts = FakeTts(FakeTtsOptions(sample_rate=22050))
    tts = CachedTts(inner_tts, cache, CachedTtsOptions(voice_id="fake"))
    inner_r = CountingRenderer()
    renderer = CachedRenderer(inner_r, cache, CachedRendererOptions(avatar_id="a", renderer_id="r"))
    return inner_tts, tts, inner_r, renderer


async def test_preload_lines_cover_greeting_fallback_and_top_answers(faq: FaqDialogue) -> None:
    lines = await preload_lines(faq, languages=("en", "zh"), faq_answers=2)
    texts = {s.text for s in lines}
    kb = faq.index.knowledge_base
    assert kb.greeting["en"] in texts and kb.greeting["zh"] in texts
    assert any(kb.fallback["en"].startswith(t) for t in texts)
    first = faq.entries[0].answer("en")
    assert any(first.startswith(t) for t in texts)
    assert len(texts) == len(lines)  # no duplicates


async def test_preload_lines_put_every_answers_first_sentence_first(faq: FaqDialogue) -> None:
    lines = await preload_lines(faq, languages=("en", "zh"), faq_answers=len(faq.entries))
    texts = [s.text for s in lines]
    lead = [s.text for s in await preload_lines(faq, languages=("en", "zh"), faq_answers=0)]
    fixed = len(lead)
    assert texts[:fixed] == lead  # greeting and fallback lines first
    firsts = [i for i, s in enumerate(lines) if i >= fixed and s.index == 0]
    rest = [i for i, s in enumerate(lines) if i >= fixed and s.index > 0]
    assert rest and max(firsts) < min(rest)  # a caller's first words before anything else
    for entry in faq.entries:
        for lang in ("en", "zh"):
            assert any(entry.answer(lang).startswith(t) for t in texts)


async def test_turn_after_preload_is_all_cache_hits(faq: FaqDialogue) -> None:
    cache = TieredCache(CacheOptions())
    inner_tts, tts, inner_r, renderer = _stack(cache)
    lines = await preload_lines(faq, faq_answers=3)
    done = await Preloader(tts=tts, renderer=renderer, busy=lambda: False).run(lines)
    assert done == len(lines) and len(inner_tts.said) == len(lines)
    rendered = len(inner_r.renders)
    sink = ListSink()
    runner = TurnRunner(
        asr=ScriptedAsr(ScriptedAsrOptions()),
        dialogue=faq,
        tts=tts,
        renderer=renderer,
        sink=sink,
        emit=lambda e: None,
        now=lambda: 0.0,
    )
    question = faq.entries[1].questions["en"][0]
    await runner.run(TurnRequest(turn=1, speech_end=0.0, text=question))
    assert sink.pushes, "the turn played nothing"
    assert len(inner_tts.said) == len(lines)  # no synthesis: every sentence was cached
    assert len(inner_r.renders) == rendered  # no rendering: every clip was cached
    await runner.run(TurnRequest(turn=2, speech_end=0.0, greeting=True))
    assert len(inner_r.renders) == rendered


async def test_preloader_is_bounded_and_waits_while_busy() -> None:
    cache = TieredCache(CacheOptions())
    inner_tts, tts, _, renderer = _stack(cache)
    lines = [ReplySentence(f"Line number {n}.", "en", 0) for n in range(5)]
    busy = iter([True, True, False] + [False] * 10)
    pre = Preloader(
        tts=tts,
        renderer=renderer,
        options=PreloadOptions(max_sentences=3, busy_wait_s=0.01),
        busy=lambda: next(busy),
    )
    assert await pre.run(lines) == 3
    assert [t for t, _ in inner_tts.said] == ["Line number 0.", "Line number 1.", "Line number 2."]


def _speech(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.int16)


async def test_speculation_predicts_warms_and_confirms(faq: FaqDialogue) -> None:
    cache = TieredCache(CacheOptions())
    inner_tts, tts, _, renderer = _stack(cache)
    hours = faq.entries[0].questions["en"][0]
    asr = ScriptedAsr(ScriptedAsrOptions(transcripts=("what are", hours)))

    async def warm_reply(sentences: list[ReplySentence]) -> None:
        await warm(tts, renderer, sentences)

    spec = SpeculativePrefetcher(
        asr=asr,
        predict=faq_predictor(faq, FaqDialogueOptions(), confidence=1.0),
        warm_reply=warm_reply,
        options=PrefetchOptions(interval_s=1.0, min_speech_s=0.5),
        busy=lambda: False,
    )
    spec.observe(_speech(0.3), 0.3)  # too little speech yet
    assert spec.stats.started == 0
    spec.observe(_speech(0.6), 0.6)  # partial "what are": no confident match
    await asyncio.sleep(0.05)
    spec.observe(_speech(1.0), 1.0)  # within the interval: skipped
    spec.observe(_speech(1.7), 1.7)  # partial: the hours question
    for _ in range(100):
        await asyncio.sleep(0.01)
        if spec.prediction is not None and spec._task is not None and spec._task.done():
            break
    assert spec.stats.started == 2 and spec.stats.predicted == 1
    said = len(inner_tts.said)
    assert said >= 1  # the predicted answer was synthesized ahead of the final transcript
    predicted = await faq_predictor(faq, FaqDialogueOptions(), confidence=1.0)(
        Transcript(text=hours)
    )
    assert predicted is not None
    assert await spec.final(Transcript(text=hours))
    assert spec.stats.confirmed == 1
    assert all(cache.contains(tts.key(s.text, s.language)) for s in predicted[1])


async def test_speculation_dropped_when_the_final_differs(faq: FaqDialogue) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow_warm(sentences: list[ReplySentence]) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hours = faq.entries[0].questions["en"][0]
    other = faq.entries[3].questions["en"][0]
    spec = SpeculativePrefetcher(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=(hours,))),
        predict=faq_predictor(faq, FaqDialogueOptions(), confidence=1.0),
        warm_reply=slow_warm,
        busy=lambda: False,
    )
    spec.observe(_speech(1.0), 1.0)
    await asyncio.wait_for(started.wait(), 2.0)
    assert not await spec.final(Transcript(text=other))
    assert cancelled.is_set() and spec.stats.dropped == 1


async def test_speculation_works_on_its_own_lane_and_leaves_the_calls(faq: FaqDialogue) -> None:
    executor = FairExecutor(FairExecutorOptions(workers=2))
    call = executor.lane("c1")
    seen: list[WorkLane | None] = []

    async def warm_reply(sentences: list[ReplySentence]) -> None:
        seen.append(current_lane())
        await run_blocking(time.sleep, 0.3)  # a guess's synthesis: all on the guess's lane

    spec = SpeculativePrefetcher(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=(faq.entries[0].questions["en"][0],))),
        predict=faq_predictor(faq, FaqDialogueOptions(), confidence=1.0),
        warm_reply=warm_reply,
        busy=lambda: False,
        lane=executor.lane("c1/speculation", background=True),
    )
    spec.observe(_speech(1.0), 1.0)
    await asyncio.sleep(0.1)
    assert [lane.name for lane in seen if lane is not None] == ["c1/speculation"]
    assert call.pending() == (0, 0) and call.budget() == executor.options.burst_s
    await spec.close()  # drops the guess and closes its lane
    with pytest.raises(LaneClosed):
        executor.submit("c1/speculation", lambda: None)
    executor.shutdown()


async def test_speculation_skips_when_busy(faq: FaqDialogue) -> None:
    spec = SpeculativePrefetcher(
        asr=ScriptedAsr(ScriptedAsrOptions()),
        predict=faq_predictor(faq, FaqDialogueOptions()),
        warm_reply=lambda s: asyncio.sleep(0),
        busy=lambda: True,
    )
    spec.observe(_speech(2.0), 2.0)
    assert spec.stats.skipped_busy == 1 and spec.stats.started == 0
    await spec.close()


async def test_speculating_dialogue_reports_the_final_transcript(faq: FaqDialogue) -> None:
    hours = faq.entries[0].questions["en"][0]
    spec = SpeculativePrefetcher(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=(hours,))),
        predict=faq_predictor(faq, FaqDialogueOptions(), confidence=1.0),
        warm_reply=lambda s: asyncio.sleep(0),
        busy=lambda: False,
    )
    spec.observe(_speech(1.0), 1.0)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if spec.prediction is not None:
            break
    dialogue = SpeculatingDialogue(faq, spec)
    assert dialogue.greeting("en") == faq.greeting("en")
    said = [s.text async for s in dialogue.reply(Transcript(text=hours))]
    assert said and spec.stats.confirmed == 1
