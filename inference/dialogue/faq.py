"""FAQ dialogue: BM25 retrieval over the bilingual knowledge base, answers spoken as sentences.

Two objects, following "load once, cheap per call":

- :class:`FaqIndex` tokenizes the knowledge base and builds one BM25 index per language
  (English: lowercase words, stopwords, light stemming; Chinese: jieba search-mode words).
  Build it once per process (~1 s, mostly jieba's dictionary).
- :class:`FaqDialogue` is a stateless view on an index with its own options (threshold,
  sentence length). It holds no per-call state, so one instance can serve every call; making
  one per call is free too.

Each indexed document is one phrasing of a question, an entry's tags, or its answer (weighted
down; so "do you take PayPal" finds the payment entry through its answer). An entry scores the
maximum over its documents; below the language's threshold the caller hears the fallback.

With the business's own documents (``documents``: a folder built by ``avatar-rtc kb build``)
the FAQ still answers first, unless its entry is not worded like the question and the best
document passage is confident (``doc_min_score``, ``doc_min_coverage``) and holds more of the
question's words than the entry does: then a few sentences of the passage are said, and the
reply's ``source`` cites it. docs/documents.md tells why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from inference.dialogue.base import Dialogue
from inference.dialogue.doc_store import DocumentStore
from inference.dialogue.knowledge_base import LANGUAGES, KbEntry, KnowledgeBase, load_knowledge_base
from inference.dialogue.sentences import SentenceSplitterOptions, split_sentences
from inference.dialogue.text import (
    ChineseTokenizer,
    contains_cjk,
    detect_language,
    english_tokens,
)
from inference.registry import Backend, BackendSettings
from inference.types import Intent, ReplySentence, Transcript

__all__ = [
    "BACKEND",
    "FaqAnswer",
    "FaqDialogue",
    "FaqDialogueOptions",
    "FaqDialogueSettings",
    "FaqIndex",
    "FaqMatch",
]

_ANSWER_WEIGHT = 0.6  # an answer document counts a little less than a phrasing or the tags


@dataclass(frozen=True, slots=True, kw_only=True)
class FaqDialogueOptions:
    """Options of the FAQ dialogue.

    ``kb_path``: a knowledge-base YAML file, ``None`` for the bundled Northwind Goods one.
    ``min_score_en`` / ``min_score_zh``: BM25 score below which the fallback line is said.
    ``max_sentence_chars``: longer answer sentences are split at clause boundaries.
    ``documents``: a folder built by ``avatar-rtc kb build``, asked when the FAQ has no
    confident answer; a passage answers when it scores ``doc_min_score`` (BM25) and holds
    ``doc_min_coverage`` of the question's words; ``doc_answer_chars``: the length of an
    answer taken from a passage.
    """

    kb_path: Path | None = None
    min_score_en: float = 1.2
    min_score_zh: float = 1.0
    max_sentence_chars: int = 120
    documents: Path | None = None
    doc_min_score: float = 1.0
    doc_min_coverage: float = 0.5
    doc_answer_chars: int = 240

    def __post_init__(self) -> None:
        if self.min_score_en < 0 or self.min_score_zh < 0 or self.doc_min_score < 0:
            raise ValueError("min_score_en, min_score_zh and doc_min_score must be >= 0")
        if not 0.0 <= self.doc_min_coverage <= 1.0:
            raise ValueError(f"doc_min_coverage must be within [0, 1], got {self.doc_min_coverage}")
        if self.doc_answer_chars < 40:
            raise ValueError(f"doc_answer_chars must be >= 40, got {self.doc_answer_chars}")
        SentenceSplitterOptions(max_chars=self.max_sentence_chars)  # validates

    def min_score(self, language: str) -> float:
        return self.min_score_zh if language == "zh" else self.min_score_en


@dataclass(frozen=True, slots=True)
class FaqAnswer:
    """What the caller hears and in which language; ``source``: the document passage it was
    taken from (None: the FAQ or the fallback line)."""

    text: str
    language: str
    intent: Intent | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class FaqMatch:
    """The best entry for a question and its BM25 score, with the language used."""

    entry: KbEntry
    score: float
    language: str
    exact: bool = False  # the question is worded like one of the entry's phrasings


class _LanguageIndex:
    def __init__(self, docs: list[list[str]], owners: list[int], weights: list[float]) -> None:
        import bm25s

        self._bm25 = bm25s.BM25()
        self._bm25.index(docs, show_progress=False)
        self._owners = np.asarray(owners, dtype=np.int64)
        self._weights = np.asarray(weights, dtype=np.float32)
        self._n_entries = int(self._owners.max()) + 1
        # Token sets of every document: a question worded exactly like one of an entry's
        # phrasings is that entry, however common its words are (BM25 alone scores
        # "Where is my order?" low: "order" is in many entries).
        self._exact: dict[frozenset[str], int] = {}
        for doc, owner in zip(docs, owners, strict=True):
            self._exact.setdefault(frozenset(doc), owner)

    def exact_owner(self, tokens: list[str]) -> int | None:
        return self._exact.get(frozenset(tokens)) if tokens else None

    def entry_scores(self, tokens: list[str]) -> np.ndarray:
        scores = np.zeros(self._n_entries, dtype=np.float32)
        if not tokens:
            return scores
        doc_scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float32) * self._weights
        np.maximum.at(scores, self._owners, doc_scores)
        return scores


class FaqIndex:
    """BM25 indexes (one per language) over a knowledge base. Build once per process."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        extra = tuple(sorted({t for e in kb.entries for t in e.tags if contains_cjk(t)}))
        self._zh = ChineseTokenizer(extra_words=extra)
        self._indexes = {lang: self._build(lang) for lang in LANGUAGES}

    @classmethod
    def load(cls, kb_path: Path | None = None) -> FaqIndex:
        """Load a knowledge base (``None``: the bundled one) and index it."""
        return cls(load_knowledge_base(kb_path))

    @property
    def knowledge_base(self) -> KnowledgeBase:
        return self._kb

    def tokens(self, text: str, language: str) -> list[str]:
        """The retrieval tokens of ``text`` in ``language``."""
        return self._zh.tokens(text) if language == "zh" else english_tokens(text)

    def _build(self, language: str) -> _LanguageIndex:
        docs: list[list[str]] = []
        owners: list[int] = []
        weights: list[float] = []
        for n, entry in enumerate(self._kb.entries):
            for question in entry.questions[language]:
                docs.append(self.tokens(question, language))
                owners.append(n)
                weights.append(1.0)
            docs.append(self.tokens(" ".join(entry.tags), language))
            owners.append(n)
            weights.append(1.0)
            docs.append(self.tokens(entry.answer(language), language))
            owners.append(n)
            weights.append(_ANSWER_WEIGHT)
        return _LanguageIndex(docs, owners, weights)

    def top(self, text: str, language: str, k: int) -> list[FaqMatch]:
        """The ``k`` highest-scoring entries for ``text`` (score > 0), best first."""
        if language not in self._indexes:
            raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
        scores = self._indexes[language].entry_scores(self.tokens(text, language))
        order = np.argsort(-scores, kind="stable")[: max(0, k)]
        return [
            FaqMatch(entry=self._kb.entries[int(i)], score=float(scores[int(i)]), language=language)
            for i in order
            if scores[int(i)] > 0.0
        ]

    def best(self, text: str, language: str | None = None) -> FaqMatch | None:
        """The highest-scoring entry for ``text`` (language detected if not given), any score."""
        lang = language or detect_language(text)
        if lang not in self._indexes:
            raise ValueError(f"unsupported language {lang!r}; expected one of {LANGUAGES}")
        index = self._indexes[lang]
        tokens = self.tokens(text, lang)
        exact = index.exact_owner(tokens)
        scores = index.entry_scores(tokens)
        if exact is not None:
            entry = self._kb.entries[exact]
            return FaqMatch(entry=entry, score=float(scores[exact]), language=lang, exact=True)
        best = int(np.argmax(scores))
        if scores[best] <= 0.0:
            return None
        return FaqMatch(entry=self._kb.entries[best], score=float(scores[best]), language=lang)


class FaqDialogue:
    """The :class:`~inference.dialogue.base.Dialogue` of the FAQ: a cheap, stateless view."""

    def __init__(
        self,
        index: FaqIndex,
        options: FaqDialogueOptions | None = None,
        documents: DocumentStore | None = None,
    ) -> None:
        self._index = index
        self._options = options or FaqDialogueOptions()
        self._documents = documents
        self._splitter_options = SentenceSplitterOptions(max_chars=self._options.max_sentence_chars)

    @classmethod
    def load(cls, options: FaqDialogueOptions | None = None) -> FaqDialogue:
        """Build the index and load the documents (once per process), and a dialogue on them."""
        options = options or FaqDialogueOptions()
        documents = DocumentStore.load(options.documents) if options.documents else None
        return cls(FaqIndex.load(options.kb_path), options, documents)

    @property
    def index(self) -> FaqIndex:
        return self._index

    @property
    def documents(self) -> DocumentStore | None:
        """The business's documents asked after the FAQ (None: none configured)."""
        return self._documents

    @property
    def entries(self) -> tuple[KbEntry, ...]:
        """Every knowledge-base entry, in file order."""
        return self._index.knowledge_base.entries

    def match(self, text: str, language: str | None = None) -> tuple[str, float] | None:
        """``(entry_id, score)`` of the answer the caller would hear, or None for the fallback."""
        found = self._match(text, language)
        return None if found is None else (found.entry.id, found.score)

    def _match(self, text: str, language: str | None) -> FaqMatch | None:
        found = self._index.best(text, language)
        if found is None:
            return None
        if not found.exact and found.score < self._options.min_score(found.language):
            return None
        return found

    def greeting(self, language: str = "en") -> ReplySentence:
        kb = self._index.knowledge_base
        return ReplySentence(text=kb.greeting[_checked(language)], language=language, index=0)

    def answer_text(self, text: str, language: str = "en") -> tuple[str, str]:
        """``(reply_text, reply_language)`` for a caller's question."""
        found = self.answer(text, language)
        return found.text, found.language

    def answer(self, text: str, language: str = "en") -> FaqAnswer:
        """The reply to a caller's question: the FAQ's, else a document's, else the fallback."""
        lang = detect_language(text, default=_checked(language))
        found = self._match(text, lang) if text.strip() else None
        from_documents = self._document_answer(text, lang, found) if text.strip() else None
        if from_documents is not None:
            return from_documents
        if found is None:
            return FaqAnswer(self._index.knowledge_base.fallback[lang], lang)
        intent: Intent | None = "handoff" if found.entry.handoff else None
        return FaqAnswer(found.entry.answer(lang), lang, intent)

    def _document_answer(self, text: str, language: str, faq: FaqMatch | None) -> FaqAnswer | None:
        """A passage's answer when it is confident and holds more of the question than the
        FAQ's entry (an entry worded like the question, or one that puts the caller through to
        a person, always wins)."""
        if self._documents is None or (faq is not None and (faq.exact or faq.entry.handoff)):
            return None
        best = self._documents.search(text, language, k=1)
        opts = self._options
        if not best or best[0].score < opts.doc_min_score:
            return None
        passage = best[0]
        if passage.coverage < opts.doc_min_coverage:
            return None
        if faq is not None and passage.coverage <= self._coverage(faq, text):
            return None
        said = self._documents.excerpt(passage.chunk, text, opts.doc_answer_chars)
        return FaqAnswer(said, language, source=passage.chunk.citation()) if said else None

    def _coverage(self, found: FaqMatch, text: str) -> float:
        """The share of the question's distinct words that the entry holds."""
        lang, entry = found.language, found.entry
        wanted = set(self._index.tokens(text, lang))
        words = " ".join([*entry.questions[lang], " ".join(entry.tags), entry.answer(lang)])
        return len(wanted & set(self._index.tokens(words, lang))) / max(1, len(wanted))

    async def reply(self, transcript: Transcript) -> AsyncGenerator[ReplySentence, None]:
        """Stream the answer (or the fallback) sentence by sentence; the sentences of an
        entry marked ``handoff`` carry that intent."""
        found = self.answer(transcript.text, transcript.language)
        for n, sentence in enumerate(split_sentences(found.text, self._splitter_options)):
            yield ReplySentence(
                text=sentence,
                language=found.language,
                index=n,
                intent=found.intent,
                source=found.source,
            )
            await asyncio.sleep(0)  # a cancellation point between sentences


def _checked(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return language


class FaqDialogueSettings(BackendSettings):
    """``dialogue: {backend: faq}``: answers from the knowledge base, no LLM."""

    backend: Literal["faq"] = "faq"
    knowledge_base: Path | None = None  # default: the bundled store FAQ
    documents: Path | None = None  # a folder built by `avatar-rtc kb build`, asked next

    def options(self) -> FaqDialogueOptions:
        return FaqDialogueOptions(kb_path=self.knowledge_base, documents=self.documents)


BACKEND: Backend[Dialogue] = Backend(
    name="faq", options=FaqDialogueOptions, make=FaqDialogue.load, settings=FaqDialogueSettings
)
