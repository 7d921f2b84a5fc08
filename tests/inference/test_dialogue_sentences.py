"""Sentence splitting of streamed reply text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.dialogue.sentences import (
    SentenceSplitter,
    SentenceSplitterOptions,
    split_sentences,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there! How are you?", ["Hello there!", "How are you?"]),
        (
            "It costs $4.99 per month. Express is $12.99.",
            ["It costs $4.99 per month.", "Express is $12.99."],
        ),
        ("Mr. Smith will call you. Thanks.", ["Mr. Smith will call you.", "Thanks."]),
        ("Use e.g. PayPal or a card. Done.", ["Use e.g. PayPal or a card.", "Done."]),
        ("We ship to the U.S. and Canada. Yes.", ["We ship to the U.S. and Canada.", "Yes."]),
        ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
        ("Really?! Yes... Okay.", ["Really?!", "Yes...", "Okay."]),
        ('He said "it works." Then left.', ['He said "it works."', "Then left."]),
        ("您好。欢迎光临！请问有什么可以帮您？", ["您好。", "欢迎光临！", "请问有什么可以帮您？"]),
        ("价格是4.99美元。好的", ["价格是4.99美元。", "好的"]),
        ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
        ("First line\nSecond line", ["First line", "Second line"]),
        ("Hello. 你好。Bye!", ["Hello.", "你好。", "Bye!"]),
        ("   ", []),
        ("no terminator", ["no terminator"]),
    ],
)
def test_split_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_streaming_waits_for_certainty() -> None:
    s = SentenceSplitter()
    assert s.push("It costs $4.") == []  # could be $4.99
    assert s.push("99 a month") == []
    assert s.push(". Next") == ["It costs $4.99 a month."]
    assert s.pending == "Next"
    assert s.push("。") == []  # a closing quote may still follow
    assert s.push("好") == ["Next。"]
    assert s.flush() == ["好"]
    assert s.pending == ""


def test_abbreviation_needs_lookahead() -> None:
    s = SentenceSplitter()
    assert s.push("Ask Mr. ") == []
    assert s.push("Smith. He ") == ["Ask Mr. Smith."]
    assert s.flush() == ["He"]


def test_clear_drops_pending() -> None:
    s = SentenceSplitter()
    s.push("half a sent")
    s.clear()
    assert s.flush() == []


def test_long_english_sentence_splits_at_clause() -> None:
    text = (
        "Standard shipping takes three to five business days, express shipping takes one to "
        "two business days, and international orders usually arrive within ten to fifteen "
        "business days depending on customs."
    )
    parts = split_sentences(text)
    assert len(parts) >= 2
    assert all(len(p) <= 120 for p in parts)
    assert parts[0].endswith(",")
    assert " ".join(parts) == text


def test_long_chinese_sentence_splits_at_clause() -> None:
    text = "我们支持多种付款方式，包括信用卡、借记卡、支付宝、微信支付以及礼品卡，" * 3 + "谢谢。"
    parts = split_sentences(text, SentenceSplitterOptions(max_chars=40))
    assert len(parts) > 2
    assert all(len(p) <= 40 for p in parts)
    assert "".join(parts) == text


def test_no_boundary_at_all_is_cut_hard() -> None:
    text = "word " * 80  # 400 chars, no punctuation
    parts = split_sentences(text.strip(), SentenceSplitterOptions(max_chars=50))
    assert len(parts) >= 4
    assert all(len(p) <= 50 for p in parts[:-1])
    assert len(parts[-1]) <= 100  # the rest is only cut once it passes 2 * max_chars
    assert " ".join(parts) == text.strip()


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        SentenceSplitterOptions(max_chars=2)
    with pytest.raises(ValueError, match="min_chars"):
        SentenceSplitterOptions(max_chars=20, min_chars=30)


_ALPHABET = st.sampled_from([*'abc XYZ.,!?$49。，！？、\n"”', "Mr.", "e.g.", "4.99", "你好"])


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.lists(_ALPHABET, max_size=6).map("".join), max_size=40),
    max_chars=st.integers(min_value=8, max_value=60),
)
def test_chunking_does_not_change_the_result(pieces: list[str], max_chars: int) -> None:
    options = SentenceSplitterOptions(max_chars=max_chars, min_chars=4)
    text = "".join(pieces)
    streamed = SentenceSplitter(options)
    out: list[str] = []
    for piece in pieces:
        out.extend(streamed.push(piece))
    out.extend(streamed.flush())
    assert out == split_sentences(text, options)
    assert "".join(out).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
