"""LLM dialogue over an OpenAI-compatible streaming ``/v1/chat/completions`` (vLLM, Ollama,
llama.cpp server), with the knowledge base as context.

- :class:`OpenAiChatDialogue` is the per-process object (the FAQ index for retrieval, the
  circuit breaker of the service). Its own ``reply`` keeps no history; :meth:`for_call`
  returns a cheap :class:`OpenAiChatCall` view that remembers the call's conversation
  (trimmed to ``history_tokens``).
- Each reply retrieves the top ``kb_top_k`` entries in the caller's language, builds the
  prompt (:mod:`inference.dialogue.prompt`), streams the completion over SSE and cuts the
  deltas into sentences with :class:`SentenceSplitter`: the first sentence goes out as soon as
  it is complete, long ones are cut at clause boundaries.
- Failures before anything was said are retried (the request is idempotent until output is
  used) with backoff; when the service stays down, is refused by the open breaker, or the
  stream breaks after sentences went out, the caller hears the short apology line instead of
  silence, and the call goes on. Cancelling the iteration closes the HTTP stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from inference.dialogue.base import Dialogue
from inference.dialogue.faq import FaqIndex
from inference.dialogue.knowledge_base import KbEntry
from inference.dialogue.prompt import ChatMessage, build_messages, trim_history
from inference.dialogue.sentences import SentenceSplitter, SentenceSplitterOptions
from inference.dialogue.text import detect_language
from inference.http import HttpError, HttpTimeouts, open_request
from inference.registry import Backend, BackendSettings
from inference.resilience import CircuitBreaker, RetryOptions, backoff_delay, is_retryable
from inference.service import ServiceOptions, ServiceSettings
from inference.types import ReplySentence, Transcript

__all__ = [
    "BACKEND",
    "DEFAULT_APOLOGY",
    "DEFAULT_PERSONA",
    "DEFAULT_SYSTEM_PROMPT",
    "LlmStreamError",
    "OpenAiChatCall",
    "OpenAiChatDialogue",
    "OpenAiChatOptions",
    "OpenAiChatSettings",
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


class LlmStreamError(HttpError):
    """The completion stream was malformed (bad JSON, an error event, no content)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAiChatOptions:
    """Options of the LLM dialogue (the service, the prompt, the budget, the resilience).

    ``service.base_url`` ends before ``/chat/completions`` (``http://127.0.0.1:8000/v1``).
    ``persona`` may hold ``{store}``. ``history_tokens`` bounds the remembered conversation.
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

    def __post_init__(self) -> None:
        if not 0 <= self.kb_top_k <= 20:
            raise ValueError(f"kb_top_k must be within 0..20, got {self.kb_top_k}")
        if self.history_tokens < 0 or self.max_tokens < 1:
            raise ValueError("history_tokens must be >= 0 and max_tokens >= 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], got {self.temperature}")
        lines = dict(self.apology)
        if "en" not in lines or not all(v.strip() for v in lines.values()):
            raise ValueError("apology must map at least 'en' to a non-empty line")
        SentenceSplitterOptions(max_chars=self.max_sentence_chars)  # validates

    @property
    def url(self) -> str:
        return self.service.url("chat/completions")


async def stream_chat_deltas(
    url: str, payload: dict[str, Any], headers: Mapping[str, str], timeouts: HttpTimeouts
) -> AsyncIterator[str]:
    """The content deltas of one streamed chat completion (SSE ``data:`` events)."""
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
            delta = _delta_text(event)
            if delta:
                yield delta
        if data and "\n".join(data).strip() != "[DONE]":
            raise LlmStreamError("completion stream ended inside an event")


def _delta_text(event: str) -> str:
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
        content = (choice.get("delta") or {}).get("content") or ""
    except (KeyError, TypeError, AttributeError):
        raise LlmStreamError(f"completion chunk without choices: {event[:80]!r}") from None
    if not isinstance(content, str):
        raise LlmStreamError("completion delta content is not text")
    return content


class OpenAiChatDialogue:
    """The per-process LLM dialogue: retrieval index, breaker; :meth:`for_call` per call."""

    def __init__(self, index: FaqIndex, options: OpenAiChatOptions | None = None) -> None:
        self.options = options or OpenAiChatOptions()
        self._index = index
        self.breaker = CircuitBreaker(self.options.service.breaker)
        self._splitter_options = SentenceSplitterOptions(max_chars=self.options.max_sentence_chars)

    @classmethod
    def load(cls, options: OpenAiChatOptions | None = None) -> OpenAiChatDialogue:
        """Index the knowledge base (once per process); the service is not contacted."""
        options = options or OpenAiChatOptions()
        return cls(FaqIndex.load(options.kb_path), options)

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

    def retrieve(self, text: str, language: str) -> list[KbEntry]:
        """The top ``kb_top_k`` entries for ``text`` scoring at least ``kb_min_score``."""
        k = self.options.kb_top_k
        if k == 0 or not text.strip():
            return []
        found = self._index.top(text, language, k)
        return [m.entry for m in found if m.score >= self.options.kb_min_score]

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
        try:
            async for text in self._sentences(transcript.text, language, history):
                said.append(text)
                yield ReplySentence(text=text, language=language, index=len(said) - 1)
        finally:
            if said:
                history.append(ChatMessage("user", transcript.text))
                joiner = "" if language == "zh" else " "
                history.append(ChatMessage("assistant", joiner.join(said)))
            _trim_in_place(history, self.options.history_tokens)

    async def _sentences(
        self, text: str, language: str, history: list[ChatMessage]
    ) -> AsyncIterator[str]:
        opts = self.options
        messages = build_messages(
            system_prompt=opts.system_prompt,
            persona=opts.persona,
            store=self._index.knowledge_base.store,
            language=language,
            kb_entries=self.retrieve(text, language),
            history=history,
            user_text=text,
            history_budget=opts.history_tokens,
        )
        service = opts.service
        payload = {
            "model": service.model,
            "messages": [m.to_json() for m in messages],
            "stream": True,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
        }
        headers = {"Accept": "text/event-stream", **service.auth_headers()}
        emitted = 0
        for attempt in range(service.retry.attempts):
            if not self.breaker.allow(time.monotonic()):
                log.warning("LLM circuit open: saying the apology")
                yield self.apology(language)
                return
            splitter = SentenceSplitter(self._splitter_options)
            try:
                async for delta in stream_chat_deltas(opts.url, payload, headers, service.timeouts):
                    for sentence in splitter.push(delta):
                        emitted += 1
                        yield sentence
                rest = splitter.flush()
                if emitted == 0 and not rest:
                    raise LlmStreamError("the completion was empty")
                for sentence in rest:
                    emitted += 1
                    yield sentence
                self.breaker.record_success(time.monotonic())
                return
            except (HttpError, TimeoutError, ConnectionError) as exc:
                retryable = is_retryable(exc) or isinstance(exc, LlmStreamError)
                if retryable:
                    self.breaker.record_failure(time.monotonic())
                log.warning("LLM request failed (attempt %d): %s", attempt + 1, exc)
                if emitted or not retryable or attempt + 1 >= service.retry.attempts:
                    yield self.apology(language)
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
        return self._shared.stream_reply(transcript, self.history)

    def for_call(self) -> OpenAiChatCall:
        return self._shared.for_call()


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
    history_tokens: int = Field(1200, ge=0, le=100000)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.3, ge=0.0, le=2.0)

    def options(self) -> OpenAiChatOptions:
        return OpenAiChatOptions(
            service=self.service.options(),
            persona=self.persona if self.persona is not None else DEFAULT_PERSONA,
            system_prompt=(
                self.system_prompt if self.system_prompt is not None else DEFAULT_SYSTEM_PROMPT
            ),
            kb_path=self.knowledge_base,
            kb_top_k=self.kb_top_k,
            history_tokens=self.history_tokens,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )


BACKEND: Backend[Dialogue] = Backend(
    name="openai",
    options=OpenAiChatOptions,
    make=OpenAiChatDialogue.load,
    settings=OpenAiChatSettings,
)
