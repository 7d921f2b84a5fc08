"""The bilingual customer-service knowledge base: typed entries loaded from YAML.

The bundled ``knowledge_base.yaml`` (Northwind Goods, a fictional online store) is read with
:mod:`importlib.resources`, so it works from an installed wheel as well as from the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "LANGUAGES",
    "KbEntry",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "bundled_knowledge_base_text",
    "load_knowledge_base",
]

LANGUAGES: tuple[str, ...] = ("en", "zh")
_BUNDLED = "knowledge_base.yaml"


class KnowledgeBaseError(ValueError):
    """The knowledge base file is missing or malformed (the message names the problem)."""


@dataclass(frozen=True, slots=True)
class KbEntry:
    """One question/answer topic with phrasings and answers in every language; ``handoff``:
    the caller asks for a person, and the answer puts the call through to one."""

    id: str
    tags: tuple[str, ...]
    questions: dict[str, tuple[str, ...]]
    answers: dict[str, str]
    handoff: bool = False

    def answer(self, language: str) -> str:
        """The spoken answer in ``language`` (``"en"`` or ``"zh"``)."""
        try:
            return self.answers[language]
        except KeyError:
            expected = ", ".join(LANGUAGES)
            raise ValueError(f"unsupported language {language!r}; expected {expected}") from None


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """A store's greeting, fallback line and entries."""

    store: str
    greeting: dict[str, str]
    fallback: dict[str, str]
    entries: tuple[KbEntry, ...]

    def entry(self, entry_id: str) -> KbEntry:
        """The entry called ``entry_id`` (KeyError naming it if absent)."""
        for item in self.entries:
            if item.id == entry_id:
                return item
        raise KeyError(f"no knowledge-base entry {entry_id!r}")


def bundled_knowledge_base_text() -> str:
    """The YAML text of the knowledge base shipped in this package."""
    return resources.files(__package__).joinpath(_BUNDLED).read_text(encoding="utf-8")


def load_knowledge_base(path: Path | None = None) -> KnowledgeBase:
    """Load and validate a knowledge base; ``None`` means the bundled one."""
    if path is None:
        text, where = bundled_knowledge_base_text(), f"{__package__}/{_BUNDLED}"
    else:
        if not path.is_file():
            raise KnowledgeBaseError(f"knowledge base file not found: {path}")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"{where}: invalid YAML: {exc}") from exc
    return _parse(data, where)


def _parse(data: Any, where: str) -> KnowledgeBase:
    if not isinstance(data, dict):
        raise KnowledgeBaseError(f"{where}: top level must be a mapping")
    greeting = _per_language(data.get("greeting"), f"{where}: greeting")
    fallback = _per_language(data.get("fallback"), f"{where}: fallback")
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise KnowledgeBaseError(f"{where}: 'entries' must be a non-empty list")
    entries: list[KbEntry] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_entries):
        entry = _parse_entry(raw, f"{where}: entries[{n}]")
        if entry.id in seen:
            raise KnowledgeBaseError(f"{where}: duplicate entry id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    return KnowledgeBase(
        store=str(data.get("store", "")),
        greeting=greeting,
        fallback=fallback,
        entries=tuple(entries),
    )


def _parse_entry(raw: Any, where: str) -> KbEntry:
    if not isinstance(raw, dict):
        raise KnowledgeBaseError(f"{where}: entry must be a mapping")
    entry_id = raw.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        raise KnowledgeBaseError(f"{where}: missing 'id'")
    where = f"{where} ({entry_id})"
    questions_raw = raw.get("questions")
    if not isinstance(questions_raw, dict):
        raise KnowledgeBaseError(f"{where}: 'questions' must map language -> list of phrasings")
    questions: dict[str, tuple[str, ...]] = {}
    answers: dict[str, str] = {}
    for lang in LANGUAGES:
        phrasings = questions_raw.get(lang)
        if (
            not isinstance(phrasings, list)
            or not phrasings
            or not all(isinstance(q, str) and q.strip() for q in phrasings)
        ):
            raise KnowledgeBaseError(f"{where}: questions.{lang} must be a non-empty list of text")
        questions[lang] = tuple(q.strip() for q in phrasings)
        answer = raw.get(f"answer_{lang}")
        if not isinstance(answer, str) or not answer.strip():
            raise KnowledgeBaseError(f"{where}: missing 'answer_{lang}'")
        answers[lang] = answer.strip()
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise KnowledgeBaseError(f"{where}: 'tags' must be a list of text")
    handoff = raw.get("handoff", False)
    if not isinstance(handoff, bool):
        raise KnowledgeBaseError(f"{where}: 'handoff' must be true or false")
    return KbEntry(
        id=entry_id, tags=tuple(tags), questions=questions, answers=answers, handoff=handoff
    )


def _per_language(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise KnowledgeBaseError(f"{where} must map language -> text")
    out: dict[str, str] = {}
    for lang in LANGUAGES:
        value = raw.get(lang)
        if not isinstance(value, str) or not value.strip():
            raise KnowledgeBaseError(f"{where}.{lang} is missing")
        out[lang] = value.strip()
    return out
