"""Prompt building for the LLM dialogue: system prompt, persona, knowledge-base context,
passages of the business's documents with their sources, language instruction, and a
conversation history trimmed to a token budget.

Everything here is pure (no I/O), so the prompt a call sends is easy to test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.dialogue.doc_store import DocChunk
from inference.dialogue.knowledge_base import KbEntry
from inference.dialogue.text import cjk_count

__all__ = [
    "LANGUAGE_INSTRUCTIONS",
    "ChatMessage",
    "build_messages",
    "estimate_tokens",
    "trim_history",
]

LANGUAGE_INSTRUCTIONS: dict[str, str] = {
    "en": "The caller speaks English: reply in English.",
    "zh": "来电者说中文：请用简体中文回答。",
}
_MESSAGE_OVERHEAD = 4  # role and separators, as chat templates add them


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message: ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown chat role {self.role!r}")

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, one per ~4 other characters."""
    cjk = cjk_count(text)
    other = len(text) - cjk
    return cjk + (other + 3) // 4


def _message_tokens(message: ChatMessage) -> int:
    return estimate_tokens(message.content) + _MESSAGE_OVERHEAD


def trim_history(history: Sequence[ChatMessage], budget: int) -> list[ChatMessage]:
    """The newest messages of ``history`` that fit in ``budget`` tokens, whole exchanges only
    (a leading assistant message without its question is dropped too)."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = _message_tokens(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


def _kb_context(entries: Sequence[KbEntry], language: str) -> str:
    lines = []
    for entry in entries:
        question = entry.questions[language][0]
        lines.append(f"- Q: {question}\n  A: {entry.answer(language)}")
    return "\n".join(lines)


def _document_context(chunks: Sequence[DocChunk]) -> str:
    return "\n".join(f"[{n}] ({c.citation()}) {c.text}" for n, c in enumerate(chunks, 1))


def build_messages(
    *,
    system_prompt: str,
    persona: str,
    store: str,
    language: str,
    kb_entries: Sequence[KbEntry],
    history: Sequence[ChatMessage],
    user_text: str,
    history_budget: int,
    documents: Sequence[DocChunk] = (),
) -> list[ChatMessage]:
    """The full prompt: system (persona, rules, language, knowledge, document passages),
    history, the question."""
    parts = [persona.format(store=store or "the store").strip(), system_prompt.strip()]
    parts.append(LANGUAGE_INSTRUCTIONS.get(language, LANGUAGE_INSTRUCTIONS["en"]))
    if kb_entries:
        parts.append(
            "Answer from these knowledge-base entries when they apply:\n"
            + _kb_context(kb_entries, language if language in ("en", "zh") else "en")
        )
    elif not documents:
        parts.append("No knowledge-base entry matches this question.")
    if documents:
        parts.append(
            "Passages of the store's own documents, each with its source in parentheses "
            "(the source is shown to the caller; do not read it aloud):\n"
            + _document_context(documents)
        )
    system = ChatMessage("system", "\n\n".join(p for p in parts if p))
    return [system, *trim_history(history, history_budget), ChatMessage("user", user_text)]
