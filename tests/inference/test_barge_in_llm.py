"""Barge-in on a streaming turn (scripted timeline with fakes): cancelling the turn stops the
LLM stream, the TTS and the render, nothing more is played, and the next turn starts clean."""

from __future__ import annotations

import asyncio
import time

from fake_openai import FakeOpenAi
from stage_fakes import CountingRenderer, ListSink

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.cache import CacheOptions, TieredCache
from inference.dialogue.faq import FaqIndex
from inference.dialogue.openai_chat import OpenAiChatDialogue, OpenAiChatOptions
from inference.render.cached import CachedRenderer, CachedRendererOptions
from inference.service import ServiceOptions
from inference.tts import CachedTts, CachedTtsOptions, FakeTts, FakeTtsOptions
from signaling.call.events import ControlEvent, Timings
from signaling.call.turn import TurnRequest, TurnRunner


async def _wait_for(cond: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_barge_in_cancels_llm_tts_render_and_next_turn_is_clean() -> None:
    server = FakeOpenAi(token_delay_s=0.08)
    url = await server.start()
    try:
        cache = TieredCache(CacheOptions())
        options = OpenAiChatOptions(service=ServiceOptions(base_url=url))
        shared = OpenAiChatDialogue(FaqIndex.load(), options)
        call = shared.for_call()
        tts_inner = FakeTts(FakeTtsOptions(realtime_factor=0.05))
        tts = CachedTts(tts_inner, cache, CachedTtsOptions(voice_id="fake"))
        r_inner = CountingRenderer(delay_s=0.05)
        renderer = CachedRenderer(
            r_inner, cache, CachedRendererOptions(avatar_id="a", renderer_id="r")
        )
        sink = ListSink()
        events: list[ControlEvent] = []
        t0 = time.monotonic()
        runner = TurnRunner(
            asr=ScriptedAsr(ScriptedAsrOptions()),
            dialogue=call,
            tts=tts,
            renderer=renderer,
            sink=sink,
            emit=events.append,
            now=lambda: time.monotonic() - t0,
        )
        turn = asyncio.create_task(runner.run(TurnRequest(turn=1, speech_end=0.0, text="hours?")))
        await _wait_for(lambda: len(sink.pushes) >= 1)  # the avatar started talking
        await asyncio.sleep(0.1)
        turn.cancel()  # the caller barges in
        try:
            await turn
        except asyncio.CancelledError:
            pass
        pushed, said, rendered = len(sink.pushes), len(tts_inner.said), len(r_inner.renders)
        await asyncio.sleep(0.5)
        assert server.disconnects == 1  # the LLM stream was closed mid-reply
        assert r_inner.closed == 1  # the render in progress was stopped
        assert len(sink.pushes) == pushed  # nothing more reached the player
        assert len(tts_inner.said) == said == 1 and len(r_inner.renders) == rendered
        assert cache.stats.by_kind.get("clip", [0, 0])[0] == 0 and cache.stats.puts == 1
        assert not any(isinstance(e, Timings) for e in events)
        assert [m.role for m in call.history] == ["user", "assistant"]

        # The next turn starts clean and runs to the end.
        server.token_delay_s = 0.0
        marks = await runner.run(TurnRequest(turn=2, speech_end=time.monotonic() - t0, text="ok?"))
        assert {"first_sentence", "first_audio", "first_frame", "first_sent"} <= marks.keys()
        assert isinstance(events[-1], Timings) and events[-1].turn == 2
        assert tts_inner.said[-1][0].startswith("We close at six")
        assert len(server.requests) == 2
        history = server.requests[1][1]["messages"]
        assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
    finally:
        await server.close()
