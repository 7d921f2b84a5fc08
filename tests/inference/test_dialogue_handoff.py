"""Handoff intents of the dialogue: the FAQ's handoff entry, the second request for a person,
and the LLM's transfer_to_human tool (against a small streaming server on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from inference.dialogue import FaqDialogue, ScriptedDialogue, ScriptedDialogueOptions
from inference.dialogue.base import ConversationMemory
from inference.dialogue.faq import FaqIndex
from inference.dialogue.handoff import HandoffGuard, HandoffGuardOptions, asks_for_person
from inference.dialogue.knowledge_base import KnowledgeBaseError, load_knowledge_base
from inference.dialogue.openai_chat import OpenAiChatDialogue, OpenAiChatOptions
from inference.http import HttpTimeouts
from inference.resilience import RetryOptions
from inference.service import ServiceOptions
from inference.types import ReplySentence, Transcript


async def _reply(dialogue: Any, text: str, language: str = "en") -> list[ReplySentence]:
    return [s async for s in dialogue.reply(Transcript(text=text, language=language))]


@pytest.fixture(scope="module")
def faq() -> FaqDialogue:
    return FaqDialogue.load()


async def test_faq_handoff_entry_carries_the_intent(faq: FaqDialogue) -> None:
    for question, language in [("Can I speak to a human?", "en"), ("我要转人工", "zh")]:
        said = await _reply(faq, question, language)
        assert said and all(s.intent == "handoff" for s in said), said
    hours = await _reply(faq, "What are your opening hours?")
    assert hours and all(s.intent is None for s in hours)
    phone = await _reply(faq, "What is your phone number?")
    assert all(s.intent is None for s in phone), "contact details are not a handoff"


def test_handoff_flag_must_be_a_boolean(tmp_path: Path) -> None:
    kb = tmp_path / "kb.yaml"
    entry = (
        "  - id: human\n    handoff: {value}\n    questions: {{en: [a person], zh: [人工]}}\n"
        "    answer_en: Sure.\n    answer_zh: 好的。\n"
    )
    head = "greeting: {en: Hi, zh: 您好}\nfallback: {en: Sorry, zh: 抱歉}\nentries:\n"
    kb.write_text(head + entry.format(value="true"), encoding="utf-8")
    assert load_knowledge_base(kb).entry("human").handoff
    kb.write_text(head + entry.format(value="maybe"), encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="handoff"):
        load_knowledge_base(kb)


@pytest.mark.parametrize(
    "text",
    [
        "Can I speak to a human?",
        "I want to talk to a person",
        "let me speak with someone please",
        "transfer me to an operator",
        "get me a representative",
        "我要转人工",
        "能找真人吗",
    ],
)
def test_asks_for_person(text: str) -> None:
    assert asks_for_person(text)


@pytest.mark.parametrize(
    "text", ["Can I visit a shop in person?", "Where is my order?", "退货要多久？", ""]
)
def test_does_not_ask_for_person(text: str) -> None:
    assert not asks_for_person(text)


async def test_guard_hands_off_on_the_second_request() -> None:
    inner = ScriptedDialogue(ScriptedDialogueOptions(replies=("I can help with that.",)))
    guard = HandoffGuard(inner, HandoffGuardOptions(asks=2))
    first = await _reply(guard, "Can I talk to a human?")
    assert [s.text for s in first] == ["I can help with that."] and first[0].intent is None
    other = await _reply(guard, "Where is my order?")
    assert other[0].intent is None
    second = await _reply(guard, "I said I want a real person!")
    assert [s.intent for s in second] == ["handoff"]
    assert "team" in second[0].text and len(inner.heard) == 2  # the agent was not asked
    zh = await _reply(guard, "我要转人工", "zh")
    assert zh[0].intent is None, "the count starts over after a handoff"
    zh = await _reply(guard, "请给我转人工", "zh")
    assert zh[0].intent == "handoff" and zh[0].language == "zh" and "人工" in zh[0].text


async def test_guard_counts_again_after_the_dialogue_hands_off(faq: FaqDialogue) -> None:
    guard = HandoffGuard(faq, HandoffGuardOptions(asks=2))
    said = await _reply(guard, "Can I speak to a human?")
    assert said[0].intent == "handoff" and guard.asked == 0


# ---- the LLM's tool --------------------------------------------------------------------------
class ToolServer:
    """Streams one scripted completion: text chunks, then (optionally) a tool call."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.tool: str | None = "transfer_to_human"
        self.refuse_tools = False
        self.bodies: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if self.refuse_tools and "tools" in body:
            return web.json_response({"error": "tools are not enabled"}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for text in self.content:
            await self._send(resp, {"content": text})
        if self.tool is not None and "tools" in body:
            call = {"index": 0, "id": "c1", "type": "function"}
            await self._send(resp, {"tool_calls": [{**call, "function": {"name": self.tool}}]})
            args = {"index": 0, "function": {"arguments": '{"reason": "asked"}'}}
            await self._send(resp, {"tool_calls": [args]})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, delta: dict[str, Any]) -> None:
        chunk = {"choices": [{"index": 0, "delta": delta}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())


@pytest.fixture
async def tool_server() -> AsyncIterator[ToolServer]:
    server = ToolServer()
    yield server
    if server.runner is not None:
        await server.runner.cleanup()


@pytest.fixture(scope="module")
def index(faq: FaqDialogue) -> FaqIndex:
    return faq.index


async def _llm(server: ToolServer, index: FaqIndex, **kw: Any) -> OpenAiChatDialogue:
    service = ServiceOptions(
        base_url=await server.start(),
        timeouts=HttpTimeouts(connect_s=1.0, first_byte_s=1.0, read_s=1.0),
        retry=RetryOptions(attempts=2, base_delay_s=0.01),
    )
    return OpenAiChatDialogue(index, OpenAiChatOptions(service=service, **kw))


async def test_llm_tool_call_hands_off(tool_server: ToolServer, index: FaqIndex) -> None:
    llm = await _llm(tool_server, index)
    said = await _reply(llm.for_call(), "Can I talk to someone?")
    assert [s.intent for s in said] == ["handoff"]
    assert said[0].text == llm.handoff_line("en")
    assert tool_server.bodies[0]["tools"][0]["function"]["name"] == "transfer_to_human"

    tool_server.content = ["Sure, one moment. "]
    said = await _reply(llm.for_call(), "我要找人工客服", "zh")
    assert [s.intent for s in said] == [None, "handoff"]
    assert said[1].text == llm.handoff_line("zh") and said[1].language == "zh"


async def test_llm_other_tools_and_plain_answers_do_not(
    tool_server: ToolServer, index: FaqIndex
) -> None:
    llm = await _llm(tool_server, index)
    tool_server.content, tool_server.tool = ["We open at nine."], "look_up_order"
    said = await _reply(llm, "When do you open?")
    assert [(s.text, s.intent) for s in said] == [("We open at nine.", None)]


async def test_llm_service_without_tools_is_asked_again_without(
    tool_server: ToolServer, index: FaqIndex
) -> None:
    llm = await _llm(tool_server, index)
    tool_server.refuse_tools, tool_server.content = True, ["We open at nine."]
    said = await _reply(llm, "When do you open?")
    assert [s.text for s in said] == ["We open at nine."]
    assert llm.tools_refused and "tools" not in tool_server.bodies[-1]
    await _reply(llm, "And on Sunday?")
    assert len(tool_server.bodies) == 3 and "tools" not in tool_server.bodies[-1]


async def test_llm_without_the_tool_option(tool_server: ToolServer, index: FaqIndex) -> None:
    llm = await _llm(tool_server, index, handoff_tool=False)
    tool_server.content = ["Hello."]
    await _reply(llm, "Hi")
    assert "tools" not in tool_server.bodies[0]


def test_llm_call_remembers_lines_said_by_a_person(index: FaqIndex) -> None:
    call = OpenAiChatDialogue(index).for_call()
    assert isinstance(call, ConversationMemory)
    call.remember("user", "My order 42 is late.")
    call.remember("assistant", "Let me check.")
    call.remember("assistant", "It ships today.")
    call.remember("user", "  ")
    assert [(m.role, m.content) for m in call.history] == [
        ("user", "My order 42 is late."),
        ("assistant", "Let me check. It ships today."),
    ]


async def test_llm_agent_gets_back_what_was_said_to_the_person(
    tool_server: ToolServer, index: FaqIndex
) -> None:
    llm = await _llm(tool_server, index)
    call = llm.for_call()
    call.remember("assistant", "Hi, Ann here.")
    call.remember("user", "My parcel is lost.")
    tool_server.content, tool_server.tool = ["I'm sorry to hear that."], None
    await _reply(call, "Can you check order 42?")
    sent = [(m["role"], m["content"]) for m in tool_server.bodies[0]["messages"][1:]]
    assert sent == [("user", "My parcel is lost. Can you check order 42?")]  # roles alternate
    assert [m.role for m in call.history] == ["user", "assistant"]
