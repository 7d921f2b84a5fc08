"""The short-window helpers: window sizes, the language prior, the repeat cut."""

from __future__ import annotations

import pytest

from inference.asr.whisper_decode import cut_repeats, pick_language, window_frames


def test_window_is_the_utterance_rounded_up_with_a_minimum() -> None:
    assert window_frames(16000 * 2, 5.0) == 500  # 2 s -> the 5 s minimum
    assert window_frames(int(16000 * 6.2), 5.0) == 700  # 6.2 s -> 7 s
    assert window_frames(16000 * 40, 5.0) == 3000  # never past Whisper's 30 s


@pytest.mark.parametrize(
    ("probs", "expected", "picked"),
    [
        ({"en": 0.5, "zh": 0.3}, "zh", "zh"),  # the audio is unsure: the expectation decides
        ({"en": 0.9, "zh": 0.05}, "zh", "en"),  # clear evidence overrules a wrong hint
        ({"en": 0.02, "zh": 0.9}, "en", "zh"),
        ({"en": 0.4, "zh": 0.6}, None, "zh"),  # no expectation: the audio alone
        ({"fr": 0.9, "en": 0.01, "zh": 0.02}, "en", "en"),  # only allowed languages
    ],
)
def test_expected_language_is_a_prior_not_a_lock(
    probs: dict[str, float], expected: str | None, picked: str
) -> None:
    assert pick_language(probs, allowed=("en", "zh"), expected=expected, weight=0.75) == picked


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        (
            "What are your opening hours? What are your opening hours? What are your",
            "What are your opening hours?",
        ),
        (
            "你们的营业时间是什么时候？你们的营业时间是什么时候？你们的",
            "你们的营业时间是什么时候？",
        ),
        ("你们的营业时间是这么时候你们的营业时间是这么时候你们的", "你们的营业时间是这么时候"),
        ("No, no, I meant the blue one.", "No, no, I meant the blue one."),
        ("我要 要求 要求 要求 要求 要求", "我要 要求"),
        ("河河河河", "河"),
        ("It costs 1000 dollars...", "It costs 1000 dollars..."),
        ("我想查一下我的order状态", "我想查一下我的order状态"),
        ("", ""),
    ],
)
def test_repeats_of_a_runaway_decoder_are_cut(text: str, cut: str) -> None:
    assert cut_repeats(text) == cut
