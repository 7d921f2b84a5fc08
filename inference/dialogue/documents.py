"""A business's own documents as retrievable chunks: read Markdown, HTML, plain text and PDF,
cut them into short passages that remember where they came from.

:func:`read_document` turns one file into :class:`Section` s (a heading path or a PDF page
with its text); :func:`chunk_sections` cuts them into :class:`DocChunk` s of at most
``max_tokens`` (estimated like the LLM prompt budget), one language per chunk, never across a
heading or a page, so every chunk can be cited exactly. A file that cannot be read raises
:class:`DocumentError` naming the reason.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from inference.dialogue.doc_store import DocChunk
from inference.dialogue.prompt import estimate_tokens
from inference.dialogue.sentences import SentenceSplitterOptions, split_sentences
from inference.dialogue.text import cjk_count, contains_cjk

__all__ = [
    "CHARS_PER_PAGE",
    "SUPPORTED_SUFFIXES",
    "Document",
    "DocumentError",
    "Section",
    "chunk_sections",
    "read_document",
]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".md", ".markdown", ".html", ".htm", ".txt", ".text", ".pdf"}
)
CHARS_PER_PAGE = 3000  # a text file counts one page per this many characters (throughput)

_LATIN_LETTER = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.DOTALL)
_LINE_END = tuple(".!?:;。！？：；…")


class DocumentError(Exception):
    """A file that could not be read; the message says why (shown, then the file is skipped)."""


@dataclass(frozen=True, slots=True)
class Section:
    """Text under one heading path (``"Returns > Refunds"``) or on one PDF page."""

    text: str
    heading: str = ""
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A file's sections; ``pages``: PDF pages, else one per :data:`CHARS_PER_PAGE` chars."""

    sections: tuple[Section, ...]
    pages: int


def read_document(path: Path) -> Document:
    """The sections of one Markdown, HTML, text or PDF file (by suffix)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        known = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise DocumentError(f"unsupported file type {suffix or '(none)'!r}; expected {known}")
    if suffix == ".pdf":
        return _read_pdf(path)
    text = _read_text(path)
    if suffix in (".md", ".markdown"):
        sections = _markdown_sections(text)
    elif suffix in (".html", ".htm"):
        sections = _html_sections(text)
    else:
        sections = [Section(text=_unwrap(text))]
    pages = max(1, math.ceil(sum(len(s.text) for s in sections) / CHARS_PER_PAGE))
    return Document(sections=tuple(sections), pages=pages)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise DocumentError("binary data, not text")
    for encoding in ("utf-8-sig", "gb18030"):  # GB 18030: Chinese text saved on Windows
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError("not UTF-8 or GB 18030 text")


def _markdown_sections(text: str) -> list[Section]:
    from markdown_it import MarkdownIt

    body = _FRONT_MATTER.sub("", text, count=1)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    return _html_sections(html)


def _html_sections(html: str) -> list[Section]:
    parser = _HtmlSections()
    parser.feed(html)
    parser.close()
    return parser.finish()


class _HtmlSections(HTMLParser):
    """Visible text of an HTML page, cut at headings; blocks become paragraphs."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav", "button"})
    _PARAGRAPH = frozenset(
        {
            "p", "div", "section", "article", "main", "header", "footer", "aside", "nav",
            "blockquote", "pre", "table", "ul", "ol", "dl", "figure", "form", "hr", "details",
        }
    )  # fmt: skip
    _LINE = frozenset({"br", "li", "tr", "dt", "dd", "summary", "figcaption", "caption"})
    _CELL = frozenset({"td", "th"})
    _HEADING: ClassVar[dict[str, int]] = {f"h{n}": n for n in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._parts: list[str] = []
        self._heading: list[str] | None = None
        self._level = 0
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = 0  # a <head> left open does not hide the page
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._HEADING:
            self._flush()
            self._heading, self._level = [], self._HEADING[tag]
        else:
            self._break(tag)
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._HEADING and self._heading is not None:
            title = _SPACES.sub(" ", "".join(self._heading)).strip()
            self._heading = None
            self._path = [(n, t) for n, t in self._path if n < self._level]
            if title:
                self._path.append((self._level, title))
        else:
            self._break(tag)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self._parts.append(data)
        else:
            self._parts.append(re.sub(r"\s+", " ", data))

    def _break(self, tag: str) -> None:
        if tag in self._PARAGRAPH:
            self._parts.append("\n\n")
        elif tag in self._LINE:
            self._parts.append("\n")
        elif tag in self._CELL:
            self._parts.append(" ")

    def _flush(self) -> None:
        text = _clean("".join(self._parts))
        self._parts = []
        if text:
            heading = " > ".join(t for _, t in self._path)
            self._sections.append(Section(text=text, heading=heading))

    def finish(self) -> list[Section]:
        self._flush()
        return self._sections


def _clean(text: str) -> str:
    """Spaces collapsed, lines trimmed, at most one blank line between paragraphs."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _read_pdf(path: Path) -> Document:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise DocumentError("reading PDF needs pypdf (pip install pypdf)") from None
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF (it needs a password)")
        texts = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # a damaged file can fail anywhere inside the parser
        raise DocumentError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    if not texts:
        raise DocumentError("PDF without pages")
    if not any(t.strip() for t in texts):
        raise DocumentError("PDF without text (scanned pages need OCR first)")
    sections = [Section(text=_unwrap(t), page=n) for n, t in enumerate(texts, 1) if t.strip()]
    return Document(sections=tuple(sections), pages=len(texts))


def _unwrap(text: str) -> str:
    """Hard-wrapped lines (PDF, plain text) joined back into paragraphs, separated by a blank
    line: a blank line, a line ending a sentence, or a short one (a heading, the last line of
    a paragraph) ends its paragraph."""
    blocks = (_unwrap_block(b) for b in _BLANK_LINES.split(text))
    return "\n\n".join(b for b in blocks if b)


def _unwrap_block(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    wide = max(len(line) for line in lines)
    out: list[str] = [lines[0]]
    for prev, line in itertools.pairwise(lines):
        if prev.endswith(_LINE_END) or len(prev) < 0.6 * wide:
            out.append("\n\n" + line)
        elif prev.endswith("-") and line[:1].islower():
            out[-1] = out[-1][:-1]
            out.append(line)
        elif contains_cjk(prev[-1]) or contains_cjk(line[0]):
            out.append(line)
        else:
            out.append(" " + line)
    return "".join(out)


def _paragraph_language(text: str) -> str:
    """``"zh"`` when Chinese characters carry the paragraph (one ideograph per word, about
    four Latin letters per word), so English naming a Chinese product stays English."""
    cjk = cjk_count(text)
    return "zh" if cjk and cjk * 4 >= len(_LATIN_LETTER.findall(text)) else "en"


def chunk_sections(
    sections: Iterable[Section], source: str, *, max_tokens: int = 200
) -> list[DocChunk]:
    """Passages of at most ``max_tokens`` (a longer sentence stands alone), one language each,
    paragraphs kept whole where they fit."""
    if max_tokens < 16:
        raise ValueError(f"max_tokens must be >= 16, got {max_tokens}")
    chunks: list[DocChunk] = []
    for section in sections:
        for language, text in _packed(section.text, max_tokens):
            chunks.append(
                DocChunk(
                    text=text,
                    source=source,
                    section=section.heading,
                    page=section.page,
                    language=language,
                )
            )
    return chunks


def _packed(text: str, max_tokens: int) -> Iterator[tuple[str, str]]:
    current: list[str] = []
    language = ""
    used = 0
    for paragraph in (p.strip() for p in _BLANK_LINES.split(text)):
        if not paragraph:
            continue
        lang = _paragraph_language(paragraph)
        for piece in _pieces(paragraph, max_tokens):
            cost = estimate_tokens(piece)
            if current and (lang != language or used + cost > max_tokens):
                yield language, "\n".join(current)
                current, used = [], 0
            current.append(piece)
            language, used = lang, used + cost
    if current:
        yield language, "\n".join(current)


def _pieces(paragraph: str, max_tokens: int) -> Iterator[str]:
    """The paragraph whole if it fits, else runs of its sentences that do."""
    if estimate_tokens(paragraph) <= max_tokens:
        yield paragraph
        return
    chinese = _paragraph_language(paragraph) == "zh"
    joiner = "" if chinese else " "
    run: list[str] = []
    used = 0
    options = SentenceSplitterOptions(max_chars=max_tokens if chinese else max_tokens * 4)
    for sentence in split_sentences(paragraph, options):
        cost = estimate_tokens(sentence)
        if run and used + cost > max_tokens:
            yield joiner.join(run)
            run, used = [], 0
        run.append(sentence)
        used += cost
    if run:
        yield joiner.join(run)
