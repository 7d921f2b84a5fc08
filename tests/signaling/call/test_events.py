"""The wire form of control events: strict JSON that always encodes as UTF-8."""

from __future__ import annotations

import json

import pytest

from signaling.call.events import Pong, ReplyText, Timings, encode_event


def test_events_are_strict_json() -> None:
    text = encode_event(ReplyText(text="你好", language="zh", turn=1, index=0))
    assert json.loads(text) == {
        "type": "reply_text",
        "text": "你好",
        "language": "zh",
        "turn": 1,
        "index": 0,
    }
    for event in (Pong(t=float("inf")), Timings(turn=1, stages={"asr_done": float("nan")})):
        with pytest.raises(ValueError):
            encode_event(event)


def test_lone_surrogates_become_replacement_characters() -> None:
    text = encode_event(ReplyText(text="a\ud800b\U0001f600", language="en", turn=1, index=0))
    text.encode("utf-8")  # what the socket does; a lone surrogate would raise here
    assert json.loads(text)["text"] == "a\ufffdb\U0001f600"


def test_reply_text_carries_its_source_only_when_it_has_one() -> None:
    cited = ReplyText(text="Descale often.", language="en", turn=2, index=0, source="care.md")
    assert json.loads(encode_event(cited))["source"] == "care.md"
    plain = ReplyText(text="Hello.", language="en", turn=2, index=0)
    assert "source" not in json.loads(encode_event(plain))
