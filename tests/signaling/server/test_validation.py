from __future__ import annotations

import json

import pytest

from signaling.server.validation import BadRequest, parse_client_message, parse_offer

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
