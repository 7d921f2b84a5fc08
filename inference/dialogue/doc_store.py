"""The document knowledge folder (``avatar-rtc kb build`` writes it): chunks and their BM25
indexes, loaded in milliseconds and searched in the caller's language.

Layout of the folder::

    manifest.json          format, counts, the files read and those skipped (with the reason)
    chunks.jsonl           one chunk a line: text, source, section, page, language
    index/<lang>/          bm25s's saved index of that language's chunks, and
    index/<lang>/rows.npy  the chunk number of each indexed row

Chunks are tokenized as the FAQ tokenizes (:mod:`inference.dialogue.text`: English words with
light stemming, jieba search-mode words for Chinese), each with its heading path, so the same
tokenizer reads a question. :meth:`DocumentStore.excerpt` turns the best chunk into a short
spoken answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.dialogue.knowledge_base import LANGUAGES
from inference.dialogue.sentences import SentenceSplitterOptions, split_sentences
from inference.dialogue.text import ChineseTokenizer, english_tokens

__all__ = [
    "FORMAT",
    "DocChunk",
    "DocMatch",
    "DocTokenizer",
    "DocumentStore",
    "DocumentStoreBuilder",
    "DocumentStoreError",
    "check_document_store",
    "check_replaceable",
]

FORMAT = 1
_MANIFEST = "manifest.json"
_CHUNKS = "chunks.jsonl"
_URL = re.compile(r"(?:https?://|www\.)\S+")
_LIST_MARK = re.compile(r"(?m)^\s*(?:[-*•·▪‣]|\d+[.)])\s+")


class DocumentStoreError(ValueError):
    """The folder is not a usable document knowledge folder (the message says why)."""


@dataclass(frozen=True, slots=True)
class DocChunk:
    """A passage of a document: its text, file, heading path or page, and language."""

    text: str
    source: str
    section: str = ""
    page: int | None = None
    language: str = "en"

    def citation(self) -> str:
        """Where the passage is: ``"manual.pdf, p. 3"``, ``"returns.md § Refunds"``."""
        if self.page is not None:
            return f"{self.source}, p. {self.page}"
        if self.section:
            return f"{self.source} § {self.section}"
        return self.source

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "source": self.source,
            "section": self.section,
            "page": self.page,
            "language": self.language,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocChunk:
        page = data.get("page")
        return cls(
            text=str(data["text"]),
            source=str(data["source"]),
            section=str(data.get("section") or ""),
            page=int(page) if page is not None else None,
            language=str(data.get("language") or "en"),
        )


@dataclass(frozen=True, slots=True)
class DocMatch:
    """A chunk, its BM25 score for a question, and the share of the question's distinct
    words it holds (``coverage``, 0..1: comparable across corpora, unlike the score)."""

    chunk: DocChunk
    score: float
    coverage: float


class DocTokenizer:
    """The FAQ's tokenizers by language; jieba's dictionary loads on the first Chinese text."""

    def __init__(self) -> None:
        self._zh: ChineseTokenizer | None = None

    def tokens(self, text: str, language: str) -> list[str]:
        if language != "zh":
            return english_tokens(text)
        if self._zh is None:
            self._zh = ChineseTokenizer()
        return self._zh.tokens(text)


class _ChunkIndex:
    """One language's BM25 index; ``rows[i]`` is the chunk number of indexed row ``i``."""

    def __init__(self, bm25: Any, rows: np.ndarray) -> None:
        self.bm25 = bm25
        self.rows = rows

    @classmethod
    def build(cls, docs: list[list[str]], rows: list[int]) -> _ChunkIndex:
        import bm25s

        bm25 = bm25s.BM25()
        bm25.index(docs, show_progress=False)
        return cls(bm25, np.asarray(rows, dtype=np.int64))

    @classmethod
    def load(cls, folder: Path) -> _ChunkIndex:
        import bm25s

        bm25 = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(bm25, np.load(folder / "rows.npy"))

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder), show_progress=False)
        np.save(folder / "rows.npy", self.rows)

    def top(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        if not tokens or k <= 0:
            return []
        scores = np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(self.rows[i]), float(scores[i])) for i in order if scores[i] > 0.0]


class DocumentStore:
    """Chunks of a business's documents with one BM25 index per language."""

    def __init__(
        self,
        chunks: Sequence[DocChunk],
        indexes: Mapping[str, _ChunkIndex],
        tokenizer: DocTokenizer | None = None,
    ) -> None:
        self._chunks = tuple(chunks)
        self._indexes = dict(indexes)
        self._tokenizer = tokenizer or DocTokenizer()

    @classmethod
    def build(
        cls, chunks: Iterable[DocChunk], tokenizer: DocTokenizer | None = None
    ) -> DocumentStore:
        """Tokenize and index ``chunks`` (see :class:`DocumentStoreBuilder`)."""
        builder = DocumentStoreBuilder(tokenizer)
        builder.add(chunks)
        return builder.build()

    @classmethod
    def load(cls, folder: Path, tokenizer: DocTokenizer | None = None) -> DocumentStore:
        """Load a folder written by :meth:`save` (``avatar-rtc kb build``)."""
        manifest = check_document_store(folder)
        chunks = _read_chunks(folder / _CHUNKS)
        indexes: dict[str, _ChunkIndex] = {}
        for lang in manifest.get("languages", {}):
            try:
                index = _ChunkIndex.load(folder / "index" / lang)
            except (OSError, ValueError) as exc:
                raise DocumentStoreError(f"{folder}: damaged {lang} index ({exc})") from None
            if index.rows.size and int(index.rows.max()) >= len(chunks):
                raise DocumentStoreError(f"{folder}: the {lang} index and chunks.jsonl disagree")
            indexes[lang] = index
        return cls(chunks, indexes, tokenizer)

    @property
    def chunks(self) -> tuple[DocChunk, ...]:
        return self._chunks

    def languages(self) -> dict[str, int]:
        """The number of chunks in each language."""
        return {lang: int(index.rows.size) for lang, index in self._indexes.items()}

    def save(self, folder: Path, manifest: Mapping[str, Any] | None = None) -> None:
        """Write the folder whole, replacing an earlier build there (never another folder);
        ``manifest`` adds keys to the manifest."""
        check_replaceable(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self._write(tmp, manifest or {})
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write(self, folder: Path, extra: Mapping[str, Any]) -> None:
        with (folder / _CHUNKS).open("w", encoding="utf-8") as f:
            for chunk in self._chunks:
                f.write(json.dumps(chunk.to_json(), ensure_ascii=False) + "\n")
        for lang, index in self._indexes.items():
            (folder / "index" / lang).mkdir(parents=True)
            index.save(folder / "index" / lang)
        manifest = {
            "format": FORMAT,
            **extra,
            "chunks": len(self._chunks),
            "languages": self.languages(),
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=2)
        (folder / _MANIFEST).write_text(text + "\n", encoding="utf-8")

    def tokens(self, text: str, language: str) -> list[str]:
        return self._tokenizer.tokens(text, language)

    def search(self, text: str, language: str, k: int = 3) -> list[DocMatch]:
        """The ``k`` best chunks in ``language`` for ``text`` (score > 0), best first."""
        index = self._indexes.get(language)
        if index is None or not text.strip():
            return []
        tokens = self.tokens(text, language)
        wanted = set(tokens)
        out = []
        for n, score in index.top(tokens, k):
            chunk = self._chunks[n]
            held = wanted & set(self.tokens(_indexed_text(chunk), language))
            out.append(DocMatch(chunk=chunk, score=score, coverage=len(held) / len(wanted)))
        return out

    def excerpt(self, chunk: DocChunk, question: str, max_chars: int = 240) -> str:
        """A short spoken answer from ``chunk``: from the sentence sharing most words with the
        question (the first one on a tie), as many whole sentences as fit in ``max_chars``."""
        opts = SentenceSplitterOptions(max_chars=max(16, max_chars // 2))
        sentences = split_sentences(_speakable(chunk.text), opts)
        if not sentences:
            return ""
        wanted = set(self.tokens(question, chunk.language))
        overlap = [len(wanted & set(self.tokens(s, chunk.language))) for s in sentences]
        start = overlap.index(max(overlap))
        joiner = "" if chunk.language == "zh" else " "
        said = [sentences[start]]
        for sentence in sentences[start + 1 :]:
            if len(joiner.join([*said, sentence])) > max_chars:
                break
            said.append(sentence)
        return joiner.join(said)


class DocumentStoreBuilder:
    """Tokenizes chunks as they are added (a build can show progress), then indexes them."""

    def __init__(self, tokenizer: DocTokenizer | None = None) -> None:
        self._tokenizer = tokenizer or DocTokenizer()
        self._chunks: list[DocChunk] = []
        self._docs: dict[str, tuple[list[list[str]], list[int]]] = {}

    def add(self, chunks: Iterable[DocChunk]) -> None:
        for chunk in chunks:
            if chunk.language not in LANGUAGES:
                raise ValueError(f"chunk language {chunk.language!r} is not one of {LANGUAGES}")
            docs, rows = self._docs.setdefault(chunk.language, ([], []))
            docs.append(self._tokenizer.tokens(_indexed_text(chunk), chunk.language))
            rows.append(len(self._chunks))
            self._chunks.append(chunk)

    def build(self) -> DocumentStore:
        indexes = {
            lang: _ChunkIndex.build(docs, rows) for lang, (docs, rows) in sorted(self._docs.items())
        }
        return DocumentStore(self._chunks, indexes, self._tokenizer)


def check_document_store(folder: Path) -> dict[str, Any]:
    """The manifest of a document knowledge folder; :class:`DocumentStoreError` if it is
    missing, of another format, or not a folder."""
    hint = f"build one with: avatar-rtc kb build DOCS... --out {folder}"
    if not folder.is_dir():
        raise DocumentStoreError(f"document knowledge folder not found: {folder} ({hint})")
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DocumentStoreError(f"{folder}: no {_MANIFEST} ({hint})") from None
    except (OSError, ValueError) as exc:
        raise DocumentStoreError(f"{folder}: unreadable {_MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DocumentStoreError(f"{folder}: format {found!r}, expected {FORMAT} ({hint})")
    return manifest


def check_replaceable(folder: Path) -> None:
    """Raise :class:`DocumentStoreError` unless ``folder`` is absent, empty, or an earlier
    build (a build replaces only those)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DocumentStoreError(f"{folder} exists and is not a folder")
    if any(folder.iterdir()) and not (folder / _MANIFEST).is_file():
        raise DocumentStoreError(
            f"{folder} holds other files: write the knowledge to a new or empty folder"
        )


def _read_chunks(path: Path) -> list[DocChunk]:
    chunks: list[DocChunk] = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    chunks.append(DocChunk.from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise DocumentStoreError(f"{path}:{n}: damaged chunk ({exc})") from None
    except OSError as exc:
        raise DocumentStoreError(f"cannot read {path}: {exc}") from None
    return chunks


def _indexed_text(chunk: DocChunk) -> str:
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def _speakable(text: str) -> str:
    """Text fit to be read aloud: no web addresses, no bullet or table marks."""
    text = _URL.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = text.replace("|", " ")
    return re.sub(r"[ \t]+", " ", text).strip()
