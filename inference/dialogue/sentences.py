"""Incremental sentence splitting for streamed reply text (English and Chinese).

Push text deltas as they arrive (from an LLM or a TTS input queue) and take complete
sentences out as soon as they are certain; :meth:`SentenceSplitter.flush` ends the input
and returns what is left. The same text gives the same sentences however it is chunked.

Rules:

- ``。！？`` (and ``…``) end a sentence; ``.!?`` end one only when followed by whitespace,
  so ``$4.99``, ``1.5kg`` and ``example.com`` stay whole; a ``.`` after a known abbreviation
  (``Mr.``, ``e.g.``, ``U.S.``) or before a lowercase word does not end a sentence.
- Closing quotes and brackets after a terminator stay with their sentence.
- A newline ends a sentence (list items, paragraphs).
- A sentence longer than ``max_chars`` is cut at a clause boundary (``, ; :`` followed by a
  space, or ``，；：、``): the last one within ``max_chars``, else the first one after it.
  Past ``2 * max_chars`` with no boundary at all it is cut at a space (or hard, for Chinese).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SentenceSplitter", "SentenceSplitterOptions", "split_sentences"]

_CJK_TERMINATORS = frozenset("。！？…")
_ASCII_TERMINATORS = frozenset(".!?")
_CLOSERS = frozenset("\"')]}”’」』）】》")
_CJK_CLAUSE = frozenset("，；：、")
_ASCII_CLAUSE = frozenset(",;:")
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "inc", "ltd",
        "co", "corp", "approx", "dept", "fig", "jan", "feb", "apr", "jun", "jul", "aug",
        "sep", "sept", "oct", "nov", "dec", "tue", "thu", "fri", "ext", "tel",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SentenceSplitterOptions:
    """``max_chars``: sentences longer than this are cut at clause boundaries.

    ``min_chars``: a clause cut never leaves a piece shorter than this.
    """

    max_chars: int = 120
    min_chars: int = 12

    def __post_init__(self) -> None:
        if self.max_chars < 8:
            raise ValueError(f"max_chars must be >= 8, got {self.max_chars}")
        if not 1 <= self.min_chars < self.max_chars:
            raise ValueError(
                f"min_chars must be in [1, max_chars), got {self.min_chars} (max {self.max_chars})"
            )


class SentenceSplitter:
    """Push text deltas, get complete sentences out (see the module docstring for rules)."""

    def __init__(self, options: SentenceSplitterOptions | None = None) -> None:
        self._options = options or SentenceSplitterOptions()
        self._buf = ""

    @property
    def pending(self) -> str:
        """Text pushed but not yet returned as a sentence."""
        return self._buf

    def push(self, delta: str) -> list[str]:
        """Add ``delta``; return the sentences that are now complete (maybe none)."""
        self._buf += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of input: return every remaining sentence and reset."""
        out = self._drain(final=True)
        self._buf = ""
        return out

    def clear(self) -> None:
        """Drop pending text (barge-in)."""
        self._buf = ""

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = _next_cut(self._buf, final, self._options)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                out.append(piece)
        if final:
            rest = self._buf.strip()
            if rest:
                out.append(rest)
            self._buf = ""
        else:
            self._buf = self._buf.lstrip()
        return out


def split_sentences(text: str, options: SentenceSplitterOptions | None = None) -> list[str]:
    """Split a whole text into sentences (the same rules as :class:`SentenceSplitter`)."""
    splitter = SentenceSplitter(options)
    return splitter.push(text) + splitter.flush()


def _next_cut(buf: str, final: bool, opts: SentenceSplitterOptions) -> int | None:
    """Index just past the first certain piece of ``buf``, or None if it is not known yet."""
    end, certain = _sentence_end(buf, final)
    # The sentence is at least `segment_len` long (exactly, when the end is certain), so
    # every cut decided below is the same however the text was chunked.
    segment_len = end if end is not None else len(buf)
    lead = _leading_space(buf)
    if segment_len - lead > opts.max_chars:
        clause = _clause_cut(buf, segment_len, final, opts)
        if clause is not None:
            return clause
        if segment_len - lead > 2 * opts.max_chars:
            return _hard_cut(buf, opts)
    if end is None and final and buf.strip():
        return len(buf)
    return end if certain else None


def _leading_space(buf: str) -> int:
    return len(buf) - len(buf.lstrip())


def _skip(buf: str, i: int, chars: frozenset[str]) -> int:
    while i < len(buf) and buf[i] in chars:
        i += 1
    return i


def _sentence_end(buf: str, final: bool) -> tuple[int | None, bool]:
    """``(end, certain)`` of the first sentence; an uncertain end needs more text to decide."""
    n = len(buf)
    i = 0
    while i < n:
        c = buf[i]
        if c == "\n":
            if buf[:i].strip():
                return i + 1, True
        elif c in _CJK_TERMINATORS:
            j = _skip(buf, _skip(buf, i + 1, _CJK_TERMINATORS | _ASCII_TERMINATORS), _CLOSERS)
            return j, final or j < n
        elif c in _ASCII_TERMINATORS:
            j = _skip(buf, _skip(buf, i + 1, _ASCII_TERMINATORS), _CLOSERS)
            if j == n:
                return j, final
            if not buf[j].isspace():
                i = j
                continue
            k = j
            while k < n and buf[k].isspace() and buf[k] != "\n":
                k += 1
            if k == n and not final:
                return j, False
            if c == "." and j == i + 1 and _is_abbreviation(buf, i):
                i = j
                continue
            if c == "." and k < n and buf[k].islower():
                i = j
                continue
            return j, True
        i += 1
    return None, False


def _is_abbreviation(buf: str, dot: int) -> bool:
    start = dot
    while start > 0 and (buf[start - 1].isalpha() or buf[start - 1] == "."):
        start -= 1
    word = buf[start:dot]
    if not word:
        return False
    if "." in word:  # e.g. "U.S", "e.g"
        return True
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith"
        return True
    return word.lower() in _ABBREVIATIONS


def _clause_cut(buf: str, limit: int, final: bool, opts: SentenceSplitterOptions) -> int | None:
    lead = _leading_space(buf)
    best_before: int | None = None
    for i in range(lead, limit):
        c = buf[i]
        if c in _CJK_CLAUSE:
            cut = _skip(buf, i + 1, _CLOSERS)
            if cut >= len(buf) and not final:
                continue  # a closing quote may still follow
        elif c in _ASCII_CLAUSE:
            j = _skip(buf, i + 1, _CLOSERS)
            if j >= len(buf):
                if not final:
                    continue
                cut = j
            elif buf[j].isspace():
                cut = j
            else:
                continue
        else:
            continue
        size = cut - lead
        if size < opts.min_chars:
            continue
        if size > 2 * opts.max_chars:
            break
        if size <= opts.max_chars:
            best_before = cut
        else:
            return best_before if best_before is not None else cut
    return best_before


def _hard_cut(buf: str, opts: SentenceSplitterOptions) -> int:
    lead = _leading_space(buf)
    stop = lead + opts.max_chars
    space = buf.rfind(" ", lead + opts.min_chars, stop)
    return space if space > 0 else stop
