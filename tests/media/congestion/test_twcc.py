"""Transport-wide congestion control feedback: the wire format, the SDP, the stamping."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpRtpfbPacket, RtpPacket

from media.congestion.twcc import (
    TRANSPORT_CC_URI,
    add_transport_cc,
    build_feedback,
    feedback_fcis,
    parse_feedback,
    payload_size,
    read_sequence,
    stamp_sequence,
    transport_cc_id,
)

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def _map(*pairs: tuple[int, str]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in pairs]
        )
    )
    return m


def test_feedback_round_trip_with_losses_large_gaps_and_a_wrapping_sequence() -> None:
    arrivals: list[tuple[int, int | None]] = []
    at = 5_000_000
    for i in range(40):
        seq = (65520 + i) & 0xFFFF
        if i % 7 == 3:
            arrivals.append((seq, None))
            continue
        at += 300_000 if i == 20 else 20_000  # one gap over the 63.75 ms of a small delta
        arrivals.append((seq, at))
    packet = build_feedback(sender_ssrc=1, media_ssrc=2, fb_count=9, arrivals=arrivals)
    (fci,) = feedback_fcis(packet)
    fb = parse_feedback(fci)
    assert fb.base_seq == 65520 and fb.fb_count == 9 and len(fb.arrivals) == 40
    for (seq, want), (got_seq, got) in zip(arrivals, fb.arrivals, strict=True):
        assert got_seq == seq
        if want is None:
            assert got is None
        else:
            assert got is not None and abs(got - want) <= 125  # 250 µs ticks
    # aiortc reads the same bytes as a feedback packet for it to route (and ignore)
    (parsed,) = RtcpPacket.parse(packet)
    assert isinstance(parsed, RtcpRtpfbPacket) and parsed.fmt == 15 and parsed.media_ssrc == 2


def test_parse_reads_run_length_and_one_bit_chunks_as_browsers_send_them() -> None:
    # base 100, 5 packets, reference time 2 (x 64 ms), feedback 7:
    # a run of 3 "small delta", then a 1-bit vector: lost, received
    fci = struct.pack("!HHI", 100, 5, (2 << 8) | 7)
    fci += struct.pack("!H", (0 << 15) | (1 << 13) | 3)
    fci += struct.pack("!H", 0x8000 | (1 << (13 - 1)))
    fci += bytes([4, 8, 12, 40]) + bytes(2)  # the deltas, padded
    fb = parse_feedback(fci)
    base = 2 * 64_000
    assert fb.arrivals == [
        (100, base + 1000),
        (101, base + 3000),
        (102, base + 6000),
        (103, None),
        (104, base + 16_000),
    ]
    assert fb.fb_count == 7


@pytest.mark.parametrize(
    ("fci", "message"),
    [
        (b"\x00\x01", "too short"),
        (struct.pack("!HHI", 1, 20, 0) + struct.pack("!H", 0xC000 | 0x1555), "packet chunks"),
        (struct.pack("!HHI", 1, 2, 0) + struct.pack("!H", (1 << 13) | 2), "receive deltas"),
        (struct.pack("!HHI", 1, 1, 0) + struct.pack("!H", (3 << 13) | 1) + b"\0\0", "reserved"),
    ],
)
def test_malformed_feedback_is_a_clear_error(fci: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_feedback(fci)


def test_build_refuses_what_it_cannot_say() -> None:
    with pytest.raises(ValueError, match="at least one received"):
        build_feedback(sender_ssrc=1, media_ssrc=2, fb_count=0, arrivals=[(5, None)])
    with pytest.raises(ValueError, match="consecutive"):
        build_feedback(sender_ssrc=1, media_ssrc=2, fb_count=0, arrivals=[(5, 1), (7, 2)])


def test_only_transport_feedback_is_taken_from_a_compound_packet() -> None:
    rr = struct.pack("!BBHI", 0x80, 201, 1, 1234)  # an empty receiver report
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 2, 10, 0)
    fb = build_feedback(sender_ssrc=1, media_ssrc=2, fb_count=1, arrivals=[(3, 64_000)])
    fcis = feedback_fcis(rr + nack + fb + b"\x80")  # and a truncated tail
    assert [parse_feedback(f).base_seq for f in fcis] == [3]


def test_stamping_keeps_every_extension_and_the_payload() -> None:
    ext = _map((1, MID), (2, LEVEL), (5, TRANSPORT_CC_URI))
    packet = RtpPacket(payload_type=111, sequence_number=9, timestamp=960, ssrc=77, payload=b"op")
    packet.extensions.mid = "0"
    packet.extensions.audio_level = (True, 30)
    stamped = stamp_sequence(packet.serialize(ext), 5, 65535)
    assert stamped is not None and read_sequence(stamped, 5) == 65535
    back = RtpPacket.parse(stamped, ext)
    assert back.extensions.mid == "0" and back.extensions.audio_level == (True, 30)
    assert back.extensions.transport_sequence_number == 65535
    assert back.payload == b"op" and back.sequence_number == 9

    bare = RtpPacket(payload_type=111, sequence_number=1, timestamp=0, ssrc=7, payload=b"x" * 9)
    stamped = stamp_sequence(bare.serialize(), 5, 42)
    assert stamped is not None and read_sequence(stamped, 5) == 42
    assert RtpPacket.parse(stamped, ext).payload == b"x" * 9
    assert read_sequence(bare.serialize(), 5) is None


def test_stamping_declines_what_it_cannot_number() -> None:
    two_byte = bytes([0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]) + struct.pack("!HH", 0x1000, 1)
    assert stamp_sequence(two_byte + bytes(4) + b"payload", 5, 1) is None
    assert stamp_sequence(b"\x80\x00", 5, 1) is None
    with pytest.raises(ValueError, match=r"1\.\.14"):
        stamp_sequence(bytes(12), 15, 1)


OFFER = """v=0\r
o=- 1 1 IN IP4 0.0.0.0\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=rtpmap:111 opus/48000/2\r
a=rtpmap:0 PCMU/8000\r
m=video 9 UDP/TLS/RTP/SAVPF 97 98\r
a=mid:1\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=rtpmap:97 VP8/90000\r
a=rtpmap:98 rtx/90000\r
a=fmtp:98 apt=97\r
"""


def test_sdp_negotiates_transport_cc_per_kind_under_one_id() -> None:
    voice = add_transport_cc(OFFER)
    assert transport_cc_id(voice) == 4  # the first id no section uses
    assert transport_cc_id(voice, "video") is None
    assert "a=rtcp-fb:111 transport-cc\r\n" in voice and "rtcp-fb:97 " not in voice
    both = add_transport_cc(OFFER, kinds=("audio", "video"))
    assert transport_cc_id(both) == 4 and transport_cc_id(both, "video") == 4
    assert "a=rtcp-fb:97 transport-cc\r\n" in both
    assert "rtcp-fb:98 " not in both  # retransmissions get no feedback format of their own
    assert add_transport_cc(both, kinds=("audio", "video")) == both  # already there
    # an answer takes the offer's id, and only where the offer has it
    plain = OFFER.replace("a=group:BUNDLE 0 1\r\n", "")
    answer = add_transport_cc(plain, offer=voice, kinds=("audio", "video"))
    assert transport_cc_id(answer) == 4 and transport_cc_id(answer, "video") is None
    answer = add_transport_cc(plain, offer=both, kinds=("audio", "video"))
    assert transport_cc_id(answer, "video") == 4
    assert add_transport_cc(OFFER, offer=OFFER, kinds=("audio", "video")) == OFFER


def test_payload_size_skips_csrcs_and_extensions() -> None:
    plain = bytes([0x80, 96]) + bytes(10) + bytes(100)  # 12-byte header, 100 bytes
    assert payload_size(plain) == 100
    stamped = stamp_sequence(plain, 3, 7)
    assert stamped is not None and len(stamped) > len(plain)
    assert payload_size(stamped) == 100
    two_csrcs = bytes([0x82, 96]) + bytes(10) + bytes(8) + bytes(100)
    assert payload_size(two_csrcs) == 100
