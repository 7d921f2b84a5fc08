from __future__ import annotations

import json

import pytest

from signaling.server.validation import (
    BadRequest,
    parse_client_message,
    parse_offer,
    parse_session_request,
)

GOOD_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
)


def offer(**fields: object) -> bytes:
    body = {"sdp": GOOD_SDP, "type": "offer"}
    body.update(fields)  # type: ignore[arg-type]
    return json.dumps(body).encode()


def test_good_offer() -> None:
    req = parse_offer(offer(avatar="default", language="zh"), max_bytes=65536)
    assert req.avatar == "default"
    assert req.language == "zh"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (offer(type="answer"), '"type"'),
        (offer(sdp=""), '"sdp"'),
        (offer(sdp="hello"), "v=0"),
        (offer(sdp="v=0\r\nm=video 9 x\r\na=fingerprint:x\r\n"), "no audio"),
        (offer(sdp="v=0\r\nm=audio 9 x\r\n"), "fingerprint"),
        (offer(avatar="../etc"), "avatar"),
        (offer(language="fr"), "language"),
        (offer(extra=1), "unknown field"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_offers_name_the_problem(raw: bytes, needle: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_offer(raw, max_bytes=65536)
    assert needle in info.value.reason
    assert info.value.status == 400


def test_oversized_offer_is_413() -> None:
    with pytest.raises(BadRequest) as info:
        parse_offer(offer(sdp=GOOD_SDP + "a=x\r\n" * 20000), max_bytes=65536)
    assert info.value.status == 413


def test_client_messages() -> None:
    assert parse_client_message('{"type":"ping","t":1.5}', max_text_chars=10).t == 1.5
    assert parse_client_message('{"type":"interrupt"}', max_text_chars=10).type == "interrupt"
    assert parse_client_message('{"type":"text","text":" hi "}', max_text_chars=10).text == "hi"
    for raw, needle in [
        ('{"type":"dance"}', "unknown message type"),
        ('{"type":"text","text":""}', "non-empty"),
        ('{"type":"text","text":"' + "x" * 11 + '"}', "longer than"),
        ('{"type":"ping","t":"soon"}', "number"),
        ("nope", "not valid JSON"),
    ]:
        with pytest.raises(BadRequest, match=needle):
            parse_client_message(raw, max_text_chars=10)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [33, 5000, 60000])
def test_deep_nesting_is_a_clear_400(depth: int) -> None:
    for raw in (nested(depth), "[" * depth + "]" * depth, "[" * depth):
        for parse in (
            lambda r: parse_offer(r.encode(), max_bytes=1 << 20),
            lambda r: parse_session_request(r.encode(), max_bytes=1 << 20),
            lambda r: parse_client_message(r, max_text_chars=1 << 20),
        ):
            with pytest.raises(BadRequest, match="nested deeper than 32") as info:
                parse(raw)
            assert info.value.status == 400


def test_brackets_inside_strings_are_not_nesting() -> None:
    sdp = GOOD_SDP + "a=x-note:" + "[{" * 100 + '\\"' + "\r\n"
    assert "[{" in parse_offer(offer(sdp=sdp), max_bytes=65536).sdp
    text = '{"type":"text","text":"' + "[" * 100 + '"}'
    assert parse_client_message(text, max_text_chars=1000).text == "[" * 100
    with pytest.raises(BadRequest, match="unknown field"):
        parse_offer(offer(extra=json.loads(nested(31))), max_bytes=65536)  # 32 levels: parsed


def test_json_is_strict() -> None:
    for raw in ('{"type":"ping","t":NaN}', '{"type":"ping","t":-Infinity}', "Infinity"):
        with pytest.raises(BadRequest, match="not valid JSON"):
            parse_client_message(raw, max_text_chars=10)
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_offer(b'{"type":"offer","sdp":"v=0","extra":NaN}', max_bytes=65536)
    huge_int = '{"type":"ping","t":' + "9" * 5000 + "}"  # beyond Python's int digit limit
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_client_message(huge_int, max_text_chars=5000)


def test_ping_time_must_be_finite() -> None:
    for t in ("1e999", "-1e999", "1" + "0" * 400):
        with pytest.raises(BadRequest, match="finite number"):
            parse_client_message('{"type":"ping","t":' + t + "}", max_text_chars=200)
    assert parse_client_message('{"type":"ping","t":1e300}', max_text_chars=10).t == 1e300


def test_lone_surrogates_are_refused() -> None:
    for text in ("\\ud800", "a\\udfffb", "\\udc00\\ud800"):
        with pytest.raises(BadRequest, match="surrogate"):
            parse_client_message('{"type":"text","text":"' + text + '"}', max_text_chars=10)
    emoji = parse_client_message('{"type":"text","text":"\\ud83d\\ude00"}', max_text_chars=10)
    assert emoji.text == "\U0001f600"  # an escaped pair is one character
    with pytest.raises(BadRequest, match="surrogate"):
        parse_offer(offer(sdp=GOOD_SDP + "a=x:\ud800\r\n"), max_bytes=65536)
