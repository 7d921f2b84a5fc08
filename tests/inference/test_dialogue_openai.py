"""The LLM dialogue against a fake OpenAI-compatible server on 127.0.0.1, faults included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from fake_openai import FakeOpenAi, Fault

from inference.dialogue import DIALOGUE_BACKENDS, dialogue_for_call
from inference.dialogue.faq import FaqIndex
from inference.dialogue.openai_chat import OpenAiChatDialogue, OpenAiChatOptions
from inference.dialogue.prompt import ChatMessage, build_messages, estimate_tokens, trim_history
from inference.http import HttpTimeouts
from inference.resilience import BreakerOptions, RetryOptions
from inference.service import ServiceOptions
from inference.types import Transcript

APOLOGY = "Sorry, I'm having trouble answering right now."


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex.load()


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAi]:
    fake = FakeOpenAi()
    yield fake
    await fake.close()


async def _dialogue(fake: FakeOpenAi, index: FaqIndex, **kw: object) -> OpenAiChatDialogue:
    """The dialogue on the fake; ``kw`` sets options of the service (``timeouts``, ``retry``,
    ``breaker``) or of the dialogue."""
    url = await fake.start()
    service: dict[str, object] = {
        "base_url": url,
        "timeouts": HttpTimeouts(connect_s=1.0, first_byte_s=0.5, read_s=0.5),
        "retry": RetryOptions(attempts=2, base_delay_s=0.01),
    }
    service.update({k: kw.pop(k) for k in ("timeouts", "retry", "breaker") if k in kw})
    options = OpenAiChatOptions(service=ServiceOptions(**service), **kw)  # type: ignore[arg-type]
    return OpenAiChatDialogue(index, options)


async def _say(d: object, text: str, language: str = "en") -> list[str]:
    reply = d.reply(Transcript(text=text, language=language))  # type: ignore[attr-defined]
    return [s.text async for s in reply]


def test_registered() -> None:
    assert DIALOGUE_BACKENDS["openai"].options is OpenAiChatOptions
    with pytest.raises(ValueError, match="base_url"):
        OpenAiChatOptions(service=ServiceOptions(base_url="127.0.0.1:8000"))


def test_prompt_has_persona_language_and_kb(index: FaqIndex) -> None:
    entry = index.knowledge_base.entries[0]
    msgs = build_messages(
        system_prompt="Be brief.",
        persona="You are Ava of {store}.",
        store="Northwind Goods",
        language="zh",
        kb_entries=[entry],
        history=[],
        user_text="你好",
        history_budget=100,
    )
    assert msgs[0].role == "system" and msgs[-1] == ChatMessage("user", "你好")
    assert "You are Ava of Northwind Goods." in msgs[0].content
    assert "简体中文" in msgs[0].content
    assert entry.answer("zh") in msgs[0].content


def test_history_budget_keeps_newest_whole_exchanges() -> None:
    history = []
    for n in range(10):
        history += [ChatMessage("user", f"question {n} " * 5), ChatMessage("assistant", "ok " * 8)]
    per_exchange = sum(estimate_tokens(m.content) + 4 for m in history[:2])
    kept = trim_history(history, per_exchange * 3 + 2)
    assert len(kept) == 6 and kept[0].content.startswith("question 7")
    assert trim_history(history, 0) == []
    # a budget that cuts inside an exchange drops its orphaned answer too
    assert trim_history(history, per_exchange - 1)[0:1] != [history[-1]]
    assert estimate_tokens("你好吗") == 3 and estimate_tokens("abcdefgh") == 2


async def test_streams_sentences_with_kb_context(server: FakeOpenAi, index: FaqIndex) -> None:
    d = await _dialogue(server, index)
    said = await _say(d, "What are your opening hours?")
    assert said == [
        "Our store opens at nine.",
        "We close at six on weekdays, and at four on Saturdays.",
    ]
    body = server.requests[0][1]
    assert body["stream"] is True
    system = body["messages"][0]["content"]
    hours = index.best("What are your opening hours?", "en")
    assert hours is not None and hours.entry.answer("en") in system
    assert "reply in English" in system


async def test_first_sentence_before_the_stream_ends(server: FakeOpenAi, index: FaqIndex) -> None:
    server.token_delay_s = 0.05  # 16 words: the whole reply takes ~0.8 s
    d = await _dialogue(server, index)
    t0 = time.monotonic()
    stream = d.reply(Transcript(text="hours?"))
    first = await anext(stream)
    first_at = time.monotonic() - t0
    rest = [s.text async for s in stream]
    total = time.monotonic() - t0
    assert first.text == "Our store opens at nine." and first.index == 0
    assert first_at < total / 2 and len(rest) == 1


async def test_reply_language_follows_caller(server: FakeOpenAi, index: FaqIndex) -> None:
    server.reply = lambda messages: "我们早上九点开门。周末营业到四点。"
    d = await _dialogue(server, index)
    out = [s async for s in d.reply(Transcript(text="你们几点开门？", language="en"))]
    assert [s.text for s in out] == ["我们早上九点开门。", "周末营业到四点。"]
    assert {s.language for s in out} == {"zh"}
    assert "简体中文" in server.requests[0][1]["messages"][0]["content"]


async def test_per_call_history(server: FakeOpenAi, index: FaqIndex) -> None:
    d = await _dialogue(server, index, history_tokens=60)
    call_a, call_b = dialogue_for_call(d), dialogue_for_call(d)
    await _say(call_a, "first question")
    await _say(call_a, "second question")
    await _say(call_b, "other call")
    a_msgs = server.requests[1][1]["messages"]
    assert [m["role"] for m in a_msgs] == ["system", "user", "assistant", "user"]
    assert a_msgs[1]["content"] == "first question"
    assert [m["role"] for m in server.requests[2][1]["messages"]] == ["system", "user"]
    for _ in range(5):
        await _say(call_a, "more")
    history: list[ChatMessage] = call_a.history  # type: ignore[attr-defined]
    assert sum(estimate_tokens(m.content) + 4 for m in history) <= 60


async def test_500_then_success_is_retried(server: FakeOpenAi, index: FaqIndex) -> None:
    server.fail("chat", Fault(status=500))
    d = await _dialogue(server, index)
    assert (await _say(d, "hours?"))[0] == "Our store opens at nine."
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500), Fault(delay_s=1.0), Fault(malformed_after=0), Fault(status=400)],
    ids=["http500", "slow_first_byte", "malformed", "http400"],
)
async def test_service_down_says_apology(server: FakeOpenAi, index: FaqIndex, fault: Fault) -> None:
    server.fail("chat", fault, fault)
    d = await _dialogue(server, index)
    said = await _say(d, "hours?")
    assert len(said) == 1 and said[0].startswith(APOLOGY)


async def test_cut_mid_sentence_after_speaking(server: FakeOpenAi, index: FaqIndex) -> None:
    server.fail("chat", Fault(cut_after=40))  # inside the second sentence
    d = await _dialogue(server, index)
    said = await _say(d, "hours?")
    assert said[0] == "Our store opens at nine."
    assert said[1].startswith(APOLOGY) and len(said) == 2
    assert len(server.requests) == 1  # what was said cannot be taken back: no retry


async def test_malformed_chunk_mid_stream(server: FakeOpenAi, index: FaqIndex) -> None:
    server.fail("chat", Fault(malformed_after=7))
    d = await _dialogue(server, index)
    said = await _say(d, "hours?")
    assert said == ["Our store opens at nine.", said[1]] and said[1].startswith(APOLOGY)


async def test_breaker_opens_and_skips_the_service(server: FakeOpenAi, index: FaqIndex) -> None:
    server.fail("chat", *[Fault(status=503)] * 4)
    d = await _dialogue(
        server,
        index,
        retry=RetryOptions(attempts=1),
        breaker=BreakerOptions(failure_threshold=2, reset_after_s=60),
    )
    for _ in range(2):
        assert (await _say(d, "hours?"))[0].startswith(APOLOGY)
    assert len(server.requests) == 2
    assert (await _say(d, "hours?"))[0].startswith(APOLOGY)
    assert len(server.requests) == 2  # open: not even tried


async def test_cancel_closes_the_stream(server: FakeOpenAi, index: FaqIndex) -> None:
    server.token_delay_s = 0.2
    d = await _dialogue(server, index, timeouts=HttpTimeouts(read_s=5.0))
    call = d.for_call()

    async def consume() -> None:
        async for _ in call.reply(Transcript(text="hours?")):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.3)  # the first sentence went out, the second is streaming
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)
    assert server.disconnects == 1
    assert [m.role for m in call.history] == ["user", "assistant"]
    assert call.history[1].content == "Our store opens at nine."
