"""Language detection and retrieval tokenizers for English and Simplified Chinese."""

from __future__ import annotations

import logging
import re

__all__ = [
    "ChineseTokenizer",
    "cjk_count",
    "contains_cjk",
    "detect_language",
    "english_tokens",
]

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD_RE = re.compile(r"[a-z0-9]+")

_EN_STOPWORDS = frozenset(
    """
    a about after all also am an and any anything are as at be been before being but by
    can could did do does doing for from get got had has have having hello hey hi how i
    if in into is it its just let like me might more most my myself need no not now of
    on one or our please pls right so some something still tell than thank thanks that
    the their them then there these they this those to too up us very want was we were
    what whats when where which who why will with would yes yet you your yours ll ve re
    s t d m ll ve re don doesn didn isn wasn aren haven hasn couldn wouldn shouldn
    """.split()
)

_ZH_STOPWORDS = frozenset(
    """
    的 了 吗 呢 吧 啊 呀 哦 嗯 么 我 你 您 他 她 它 我们 你们 他们 是 在 有 没有 还 就
    都 和 与 把 被 给 这 那 这个 那个 个 怎么 怎么样 怎样 如何 什么 为什么 哪 哪里 哪儿
    请问 请 一下 一个 能 能不能 可以 可不 不 要 想 会 吧 也 又 才 很 太 让 对 帮 帮我
    您好 你好 谢谢 麻烦 我要 我想 时候 什么时候 一些 现在 已经 到 用 点 多 买
    """.split()
)


def contains_cjk(text: str) -> bool:
    """True if ``text`` has at least one CJK ideograph."""
    return _CJK_RE.search(text) is not None


def cjk_count(text: str) -> int:
    """The number of CJK ideographs in ``text``."""
    return len(_CJK_RE.findall(text))


def detect_language(text: str, default: str = "en") -> str:
    """``"zh"`` when the text has CJK ideographs, ``"en"`` when it has Latin words, else
    ``default``."""
    if contains_cjk(text):
        return "zh"
    if _LATIN_WORD_RE.search(text.lower()):
        return "en"
    return default


def _stem(word: str) -> str:
    """A tiny suffix stripper: enough to match plurals and -ing/-ed forms."""
    if len(word) <= 3 or not word.isalpha():
        return word
    stem = word
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            stem = word[: len(word) - len(suffix)] + repl
            break
    if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "aeious":
        stem = stem[:-1]  # shipp -> ship
    if len(stem) >= 4 and stem[-1] in "ey":
        stem = stem[:-1]  # purchase / purchased -> purchas, delivery -> deliver
    return stem


def english_tokens(text: str) -> list[str]:
    """Lowercase, split on non-alphanumerics, drop stopwords, light stemming."""
    words = _LATIN_WORD_RE.findall(text.lower().replace("’", "'"))
    return [_stem(w) for w in words if w not in _EN_STOPWORDS]


class ChineseTokenizer:
    """jieba search-mode words (own dictionary instance) plus the Latin words in the text.

    Loading the jieba dictionary takes ~0.7 s the first time in a process; build one per
    process and share it.
    """

    def __init__(self, extra_words: tuple[str, ...] = ()) -> None:
        import jieba

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        for word in extra_words:
            self._jieba.add_word(word)

    def tokens(self, text: str) -> list[str]:
        """Tokens of ``text`` for BM25 (stopwords and punctuation removed)."""
        out: list[str] = []
        for token in self._jieba.cut_for_search(text):
            token = token.strip().lower()
            if not token or token in _ZH_STOPWORDS:
                continue
            if contains_cjk(token):
                out.append(token)
            else:
                out.extend(english_tokens(token))
        return out
