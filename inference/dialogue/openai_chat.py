"""LLM dialogue over an OpenAI-compatible streaming ``/v1/chat/completions`` (vLLM, Ollama,
llama.cpp server), with the knowledge base as context.

- :class:`OpenAiChatDialogue` is the per-process object (the FAQ index for retrieval, the
  circuit breaker of the service). Its own ``reply`` keeps no history; :meth:`for_call`
  returns a cheap :class:`OpenAiChatCall` view that remembers the call's conversation
  (trimmed to ``history_tokens``).
- Each reply retrieves the top ``kb_top_k`` entries in the caller's language (and the top
  ``documents_top_k`` passages of the business's documents, ``documents``: a folder built by
  ``avatar-rtc kb build``, whose sources the reply's ``source`` cites), builds the
  prompt (:mod:`inference.dialogue.prompt`), streams the completion over SSE and cuts the
  deltas into sentences with :class:`SentenceSplitter`: the first sentence goes out as soon as
  it is complete, long ones are cut at clause boundaries.
- Failures before anything was said are retried (the request is idempotent until output is
  used) with backoff; when the service stays down, is refused by the open breaker, or the
  stream breaks after sentences went out, the caller hears the short apology line instead of
  silence, and the call goes on. Cancelling the iteration closes the HTTP stream.
- The model is offered a ``transfer_to_human`` tool (``handoff_tool``); when it calls it,
  the reply ends with the handoff line, whose sentence carries ``intent="handoff"``. A
  service that refuses tools (400) is asked again without them, from then on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from inference.dialogue.base import Dialogue
from inference.dialogue.doc_store import DocChunk, DocumentStore
from inference.dialogue.faq import FaqIndex
from inference.dialogue.handoff import DEFAULT_HANDOFF_LINES
from inference.dialogue.knowledge_base import KbEntry
from inference.dialogue.prompt import ChatMessage, build_messages, trim_history
from inference.dialogue.sentences import SentenceSplitter, SentenceSplitterOptions
from inference.dialogue.text import detect_language
from inference.http import HttpError, HttpStatusError, HttpTimeouts, open_request
from inference.registry import Backend, BackendSettings
from inference.resilience import CircuitBreaker, RetryOptions, backoff_delay, is_retryable
from inference.service import ServiceOptions, ServiceSettings
from inference.types import Intent, ReplySentence, Transcript

__all__ = [
    "BACKEND",
    "DEFAULT_APOLOGY",
    "DEFAULT_PERSONA",
    "DEFAULT_SYSTEM_PROMPT",
    "HANDOFF_TOOL",
    "ChatDelta",
    "LlmStreamError",
    "OpenAiChatCall",
    "OpenAiChatDialogue",
    "OpenAiChatOptions",
    "OpenAiChatSettings",
    "stream_chat",
    "stream_chat_deltas",
]

log = logging.getLogger(__name__)

DEFAULT_PERSONA = "You are Ava, the friendly voice assistant of {store} on a live video call."
DEFAULT_SYSTEM_PROMPT = (
    "Answer customer-service questions in one to three short spoken sentences. "
    "No lists, markdown, emojis or URLs: your words are read aloud. "
    "If the knowledge base does not cover the question, say so briefly and offer to help "
    "with orders, shipping, returns or payments."
)
DEFAULT_APOLOGY: tuple[tuple[str, str], ...] = (
    ("en", "Sorry, I'm having trouble answering right now. Please ask me again in a moment."),
    ("zh", "抱歉，我现在暂时无法回答，请稍后再问我一次。"),
)
HANDOFF_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "transfer_to_human",
        "description": (
            "Put the caller through to a human member of the support team. Call it when the "
            "caller asks for a person, or when you cannot help and they want more help."
        ),
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "why, in a few words"}},
        },
    },
}


class LlmStreamError(HttpError):
    """The completion stream was malformed (bad JSON, an error event, no content)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAiChatOptions:
    """Options of the LLM dialogue (the service, the prompt, the budget, the resilience).

    ``service.base_url`` ends before ``/chat/completions`` (``http://127.0.0.1:8000/v1``).
    ``persona`` may hold ``{store}``. ``history_tokens`` bounds the remembered conversation.
    ``documents``: a folder built by ``avatar-rtc kb build``; its ``documents_top_k`` best
    passages scoring at least ``documents_min_score`` go into the prompt with their sources.
    """

    service: ServiceOptions = field(
        default_factory=lambda: ServiceOptions(retry=RetryOptions(attempts=2))
    )
    persona: str = DEFAULT_PERSONA
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    kb_path: Path | None = None
    kb_top_k: int = 3
    kb_min_score: float = 0.5
    history_tokens: int = 1200
    max_tokens: int = 256
    temperature: float = 0.3
    max_sentence_chars: int = 120
    apology: tuple[tuple[str, str], ...] = DEFAULT_APOLOGY  # (language, line) pairs
    handoff_tool: bool = True  # offer transfer_to_human
    handoff_lines: tuple[tuple[str, str], ...] = DEFAULT_HANDOFF_LINES  # said when it is called
    documents: Path | None = None
    documents_top_k: int = 3
    documents_min_score: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.kb_top_k <= 20:
            raise ValueError(f"kb_top_k must be within 0..20, got {self.kb_top_k}")
        if not 0 <= self.documents_top_k <= 20 or self.documents_min_score < 0:
            raise ValueError("documents_top_k must be within 0..20, documents_min_score >= 0")
        if self.history_tokens < 0 or self.max_tokens < 1:
            raise ValueError("history_tokens must be >= 0 and max_tokens >= 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], got {self.temperature}")
        for name in ("apology", "handoff_lines"):
            lines = dict(getattr(self, name))
            if "en" not in lines or not all(v.strip() for v in lines.values()):
                raise ValueError(f"{name} must map at least 'en' to a non-empty line")
        SentenceSplitterOptions(max_chars=self.max_sentence_chars)  # validates

    @property
    def url(self) -> str:
        return self.service.url("chat/completions")


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One streamed chunk: its text, and the name of a tool the model starts calling."""

    content: str = ""
    tool: str | None = None


async def stream_chat_deltas(
    url: str, payload: dict[str, Any], headers: Mapping[str, str], timeouts: HttpTimeouts
) -> AsyncIterator[str]:
    """The content deltas of one streamed chat completion (SSE ``data:`` events)."""
    async for delta in stream_chat(url, payload, headers, timeouts):
        if delta.content:
            yield delta.content


async def stream_chat(
    url: str, payload: dict[str, Any], headers: Mapping[str, str], timeouts: HttpTimeouts
) -> AsyncIterator[ChatDelta]:
    """The deltas (text and tool calls) of one streamed chat completion."""
    request = open_request("POST", url, headers=headers, json_body=payload, timeouts=timeouts)
    async with request as r:
        await r.raise_for_status()
        data: list[str] = []
        async for line in r.lines():
            if line.startswith(":"):
                continue  # an SSE comment (keep-alive)
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
                continue
            if line or not data:
                continue  # other fields (event:, id:) or stray blank lines
            event, data = "\n".join(data), []
            if event.strip() == "[DONE]":
                return
            delta = _delta(event)
            if delta.content or delta.tool:
                yield delta
        if data and "\n".join(data).strip() != "[DONE]":
            raise LlmStreamError("completion stream ended inside an event")


def _delta(event: str) -> ChatDelta:
    try:
        obj = json.loads(event)
    except ValueError:
        raise LlmStreamError(f"malformed completion chunk: {event[:80]!r}") from None
    if not isinstance(obj, dict):
        raise LlmStreamError(f"completion chunk is not an object: {event[:80]!r}")
    if "error" in obj:
        raise LlmStreamError(f"the service reported an error: {str(obj['error'])[:200]}")
    try:
        choice = obj["choices"][0] if obj["choices"] else {}
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        tool = _tool_name(delta.get("tool_calls"))
    except (KeyError, TypeError, AttributeError):
        raise LlmStreamError(f"completion chunk without choices: {event[:80]!r}") from None
    if not isinstance(content, str):
        raise LlmStreamError("completion delta content is not text")
    return ChatDelta(content=content, tool=tool)


def _tool_name(calls: Any) -> str | None:
    """The function name a ``tool_calls`` delta starts (None: none, or arguments only)."""
    if not isinstance(calls, list):
        return None
    for call in calls:
        name = ((call or {}).get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return name
    return None


class OpenAiChatDialogue:
    """The per-process LLM dialogue: retrieval index, breaker; :meth:`for_call` per call."""

    def __init__(
        self,
        index: FaqIndex,
        options: OpenAiChatOptions | None = None,
        documents: DocumentStore | None = None,
    ) -> None:
        self.options = options or OpenAiChatOptions()
        self._index = index
        self._documents = documents
        self.breaker = CircuitBreaker(self.options.service.breaker)
        self._splitter_options = SentenceSplitterOptions(max_chars=self.options.max_sentence_chars)
        self.tools_refused = False  # the service answered 400 to a request with tools

    @classmethod
    def load(cls, options: OpenAiChatOptions | None = None) -> OpenAiChatDialogue:
        """Index the knowledge base and load the documents (once per process); the service
        is not contacted."""
        options = options or OpenAiChatOptions()
        documents = DocumentStore.load(options.documents) if options.documents else None
        return cls(FaqIndex.load(options.kb_path), options, documents)

    @property
    def index(self) -> FaqIndex:
        return self._index

    def for_call(self) -> OpenAiChatCall:
        """A view with its own conversation history, for one call."""
        return OpenAiChatCall(self)

    def greeting(self, language: str = "en") -> ReplySentence:
        kb = self._index.knowledge_base
        text = kb.greeting.get(language) or kb.greeting["en"]
        return ReplySentence(text=text, language=language, index=0)

    def apology(self, language: str) -> str:
        """The short line said when the service cannot answer."""
        lines = dict(self.options.apology)
        return lines.get(language) or lines["en"]

    def handoff_line(self, language: str) -> str:
        """What is said when the model puts the caller through to a person."""
        lines = dict(self.options.handoff_lines)
        return lines.get(language) or lines["en"]

    def retrieve(self, text: str, language: str) -> list[KbEntry]:
        """The top ``kb_top_k`` entries for ``text`` scoring at least ``kb_min_score``."""
        k = self.options.kb_top_k
        if k == 0 or not text.strip():
            return []
        found = self._index.top(text, language, k)
        return [m.entry for m in found if m.score >= self.options.kb_min_score]

    def retrieve_documents(self, text: str, language: str) -> list[DocChunk]:
        """The top ``documents_top_k`` passages for ``text`` scoring ``documents_min_score``."""
        if self._documents is None or self.options.documents_top_k == 0:
            return []
        found = self._documents.search(text, language, self.options.documents_top_k)
        return [m.chunk for m in found if m.score >= self.options.documents_min_score]

    def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        """A reply without conversation memory (use :meth:`for_call` in calls)."""
        return self.stream_reply(transcript, [])

    async def stream_reply(
        self, transcript: Transcript, history: list[ChatMessage]
    ) -> AsyncGenerator[ReplySentence, None]:
        """Stream the reply; appends the exchange (as far as it was said) to ``history``."""
        language = detect_language(transcript.text, default=transcript.language)
        if language not in ("en", "zh"):
            language = "en"
        said: list[str] = []
        documents = self.retrieve_documents(transcript.text, language)
        source = "; ".join(dict.fromkeys(c.citation() for c in documents)) or None
        apology = self.apology(language)
        try:
            sentences = self._sentences(transcript.text, language, history, documents)
            async for text, intent in sentences:
                said.append(text)
                cited = source if intent is None and text != apology else None
                yield ReplySentence(
                    text=text, language=language, index=len(said) - 1, intent=intent, source=cited
                )
        finally:
            if said:
                history.append(ChatMessage("user", transcript.text))
                joiner = "" if language == "zh" else " "
                history.append(ChatMessage("assistant", joiner.join(said)))
            _trim_in_place(history, self.options.history_tokens)

    def _payload(self, messages: list[ChatMessage]) -> dict[str, Any]:
        opts = self.options
        payload: dict[str, Any] = {
            "model": opts.service.model,
            "messages": [m.to_json() for m in messages],
            "stream": True,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
        }
        if opts.handoff_tool and not self.tools_refused:
            payload["tools"] = [HANDOFF_TOOL]
        return payload

    def _refuses_tools(self, exc: Exception, payload: dict[str, Any]) -> bool:
        """True (and tools are left out from now on) when a request with tools got 400."""
        if "tools" not in payload or not isinstance(exc, HttpStatusError) or exc.status != 400:
            return False
        log.warning("the LLM service refused the transfer_to_human tool (400): asking without it")
        self.tools_refused = True
        del payload["tools"]
        return True

    async def _sentences(
        self,
        text: str,
        language: str,
        history: list[ChatMessage],
        documents: Sequence[DocChunk] = (),
    ) -> AsyncIterator[tuple[str, Intent | None]]:
        """The reply's sentences, each with its intent (the handoff line has one)."""
        opts = self.options
        messages = build_messages(
            system_prompt=opts.system_prompt,
            persona=opts.persona,
            store=self._index.knowledge_base.store,
            language=language,
            kb_entries=self.retrieve(text, language),
            documents=documents,
            history=history,
            user_text=text,
            history_budget=opts.history_tokens,
        )
        service = opts.service
        payload = self._payload(messages)
        headers = {"Accept": "text/event-stream", **service.auth_headers()}
        emitted = 0
        for attempt in range(service.retry.attempts):
            if not self.breaker.allow(time.monotonic()):
                log.warning("LLM circuit open: saying the apology")
                yield self.apology(language), None
                return
            splitter = SentenceSplitter(self._splitter_options)
            handoff = False
            try:
                async for delta in stream_chat(opts.url, payload, headers, service.timeouts):
                    handoff = handoff or delta.tool == HANDOFF_TOOL["function"]["name"]
                    for sentence in splitter.push(delta.content):
                        emitted += 1
                        yield sentence, None
                rest = splitter.flush()
                if emitted == 0 and not rest and not handoff:
                    raise LlmStreamError("the completion was empty")
                for sentence in rest:
                    emitted += 1
                    yield sentence, None
                self.breaker.record_success(time.monotonic())
                if handoff:
                    yield self.handoff_line(language), "handoff"
                return
            except (HttpError, TimeoutError, ConnectionError) as exc:
                if not emitted and self._refuses_tools(exc, payload):
                    continue
                retryable = is_retryable(exc) or isinstance(exc, LlmStreamError)
                if retryable:
                    self.breaker.record_failure(time.monotonic())
                log.warning("LLM request failed (attempt %d): %s", attempt + 1, exc)
                if emitted or not retryable or attempt + 1 >= service.retry.attempts:
                    yield self.apology(language), None
                    return
            await asyncio.sleep(backoff_delay(attempt, service.retry, random.random()))


class OpenAiChatCall:
    """One call's view of :class:`OpenAiChatDialogue`: the same service, its own history."""

    def __init__(self, shared: OpenAiChatDialogue) -> None:
        self._shared = shared
        self.history: list[ChatMessage] = []

    def greeting(self, language: str = "en") -> ReplySentence:
        return self._shared.greeting(language)

    def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        if self.history and self.history[-1].role == "user":  # said to a person, unanswered
            said = self.history.pop().content
            transcript = dataclasses.replace(transcript, text=f"{said} {transcript.text}")
        return self._shared.stream_reply(transcript, self.history)

    def for_call(self) -> OpenAiChatCall:
        return self._shared.for_call()

    def remember(self, role: str, text: str) -> None:
        """Add a line said outside the dialogue (a person had the call): the caller's
        (``user``) or the avatar's (``assistant``); a line of the same role as the last
        one joins it, so the roles keep alternating."""
        message = ChatMessage(role, text.strip())
        if not message.content:
            return
        if self.history and self.history[-1].role == role:
            last = self.history[-1]
            message = ChatMessage(role, f"{last.content} {message.content}")
            self.history[-1] = message
        else:
            self.history.append(message)
        _trim_in_place(self.history, self._shared.options.history_tokens)


def _trim_in_place(history: list[ChatMessage], budget: int) -> None:
    kept = trim_history(history, budget)
    if len(kept) != len(history):
        history[:] = kept


class OpenAiChatSettings(BackendSettings):
    """``dialogue: {backend: openai}``: an LLM service, the knowledge base as its context."""

    backend: Literal["openai"] = "openai"
    knowledge_base: Path | None = None  # default: the bundled store FAQ
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    persona: str | None = None  # may hold {store}; None: the built-in persona
    system_prompt: str | None = None  # None: the built-in rules (short spoken answers)
    kb_top_k: int = Field(3, ge=0, le=20)
    documents: Path | None = None  # a folder built by `avatar-rtc kb build`
    documents_top_k: int = Field(3, ge=0, le=20)
    history_tokens: int = Field(1200, ge=0, le=100000)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    handoff_tool: bool = True  # offer the model a transfer_to_human tool

    def options(self) -> OpenAiChatOptions:
        return OpenAiChatOptions(
            service=self.service.options(),
            persona=self.persona if self.persona is not None else DEFAULT_PERSONA,
            system_prompt=(
                self.system_prompt if self.system_prompt is not None else DEFAULT_SYSTEM_PROMPT
            ),
            kb_path=self.knowledge_base,
            kb_top_k=self.kb_top_k,
            documents=self.documents,
            documents_top_k=self.documents_top_k,
            history_tokens=self.history_tokens,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            handoff_tool=self.handoff_tool,
        )


BACKEND: Backend[Dialogue] = Backend(
    name="openai",
    options=OpenAiChatOptions,
    make=OpenAiChatDialogue.load,
    settings=OpenAiChatSettings,
)
