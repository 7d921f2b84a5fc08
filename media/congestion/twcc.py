"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-01).

A sender numbers its packets with the transport-wide sequence number header extension; a
receiver that negotiated it (``a=rtcp-fb:<pt> transport-cc``) answers with RTCP transport
feedback (RTPFB, FMT 15) every 50-250 ms: which of those packets arrived and when, to
250 µs. Every browser does this. With it the *sender* sees each packet's one-way delay,
so it can tell a bottleneck queue from its own side, whatever the receiver's estimator.

This module is the wire format and the SDP: :func:`parse_feedback` and
:func:`build_feedback` for the FCI, :func:`feedback_fcis` to find it in a compound RTCP
packet, :func:`stamp_sequence` and :func:`read_sequence` for the header extension,
:func:`add_transport_cc` and :func:`negotiated_id` for the SDP. A browser sends no REMB for
a stream it reports this way: the sender estimates instead (:mod:`media.congestion.twcc_monitor`).
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TRANSPORT_CC_URI",
    "Feedback",
    "add_transport_cc",
    "build_feedback",
    "feedback_fcis",
    "negotiated_id",
    "parse_feedback",
    "payload_size",
    "read_sequence",
    "stamp_sequence",
    "transport_cc_id",
]

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
_RTPFB, _FMT = 205, 15
_TICK_US = 250  # receive deltas count 250 µs
_REF_US = 64_000  # the reference time counts 64 ms
_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2


@dataclass(slots=True)
class Feedback:
    """One feedback message: ``arrivals`` holds (sequence number, arrival µs or None when
    the packet did not arrive) from ``base_seq`` on, arrival times on the receiver's clock."""

    base_seq: int
    fb_count: int
    arrivals: list[tuple[int, int | None]] = field(default_factory=list)


def feedback_fcis(data: bytes) -> list[bytes]:
    """The FCI of every transport feedback packet in a (compound) RTCP packet."""
    out: list[bytes] = []
    pos = 0
    while pos + 4 <= len(data):
        first, pt, words = data[pos], data[pos + 1], struct.unpack_from("!H", data, pos + 2)[0]
        end = pos + 4 * (words + 1)
        if first >> 6 != 2 or end > len(data):
            break
        if pt == _RTPFB and first & 0x1F == _FMT and end - pos >= 12:
            body = data[pos + 12 : end]
            if first & 0x20 and body:  # padding: its last byte says how much
                body = body[: len(body) - body[-1]]
            out.append(bytes(body))
        pos = end
    return out


def parse_feedback(fci: bytes) -> Feedback:
    """The packets reported by one FCI; ValueError when it is malformed."""
    if len(fci) < 8:
        raise ValueError(f"transport feedback too short ({len(fci)} bytes)")
    base, count, ref_fb = struct.unpack_from("!HHI", fci)
    ref = ref_fb >> 8
    if ref & 0x800000:
        ref -= 1 << 24  # a signed 24-bit value
    symbols: list[int] = []
    pos = 8
    while len(symbols) < count:
        if pos + 2 > len(fci):
            raise ValueError("transport feedback ends inside its packet chunks")
        chunk = struct.unpack_from("!H", fci, pos)[0]
        pos += 2
        if not chunk & 0x8000:  # run length: one symbol, 13-bit count
            symbols.extend([(chunk >> 13) & 0x3] * (chunk & 0x1FFF))
        elif chunk & 0x4000:  # status vector of seven 2-bit symbols
            symbols.extend((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
        else:  # status vector of fourteen 1-bit symbols
            symbols.extend((chunk >> (13 - i)) & 0x1 for i in range(14))
    at = ref * _REF_US
    arrivals: list[tuple[int, int | None]] = []
    for i, symbol in enumerate(symbols[:count]):
        seq = (base + i) & 0xFFFF
        if symbol == _NOT_RECEIVED:
            arrivals.append((seq, None))
            continue
        if symbol == _SMALL:
            if pos + 1 > len(fci):
                raise ValueError("transport feedback ends inside its receive deltas")
            delta = fci[pos]
            pos += 1
        elif symbol == _LARGE:
            if pos + 2 > len(fci):
                raise ValueError("transport feedback ends inside its receive deltas")
            delta = struct.unpack_from("!h", fci, pos)[0]
            pos += 2
        else:
            raise ValueError("transport feedback uses the reserved status symbol")
        at += delta * _TICK_US
        arrivals.append((seq, at))
    return Feedback(base_seq=base, fb_count=ref_fb & 0xFF, arrivals=arrivals)


def build_feedback(
    *, sender_ssrc: int, media_ssrc: int, fb_count: int, arrivals: list[tuple[int, int | None]]
) -> bytes:
    """A whole RTCP transport feedback packet for consecutive sequence numbers
    (``arrivals`` as in :class:`Feedback`, at least one received)."""
    if not arrivals or all(a is None for _, a in arrivals):
        raise ValueError("transport feedback needs at least one received packet")
    for (a, _), (b, _) in itertools.pairwise(arrivals):
        if (b - a) & 0xFFFF != 1:
            raise ValueError("transport feedback covers consecutive sequence numbers")
    first_at = next(a for _, a in arrivals if a is not None)
    ref = first_at // _REF_US
    prev = ref * _REF_US
    symbols: list[int] = []
    deltas = bytearray()
    for _, at in arrivals:
        if at is None:
            symbols.append(_NOT_RECEIVED)
            continue
        ticks = round((at - prev) / _TICK_US)
        prev += ticks * _TICK_US
        if 0 <= ticks <= 0xFF:
            symbols.append(_SMALL)
            deltas.append(ticks)
        else:
            symbols.append(_LARGE)
            deltas += struct.pack("!h", max(-0x8000, min(0x7FFF, ticks)))
    chunks = bytearray()
    for i in range(0, len(symbols), 7):
        group = symbols[i : i + 7] + [_NOT_RECEIVED] * (7 - len(symbols[i : i + 7]))
        word = 0xC000
        for j, symbol in enumerate(group):
            word |= symbol << (12 - 2 * j)
        chunks += struct.pack("!H", word)
    body = struct.pack(
        "!IIHHI",
        sender_ssrc,
        media_ssrc,
        arrivals[0][0] & 0xFFFF,
        len(arrivals),
        ((ref & 0xFFFFFF) << 8) | (fb_count & 0xFF),
    )
    body += bytes(chunks) + bytes(deltas)
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | _FMT, _RTPFB, len(body) // 4) + body


def _extension_block(data: bytes) -> tuple[int, int, int] | None:
    """(start of the extension header, profile, end of its elements) of an RTP packet with
    a header extension, else None."""
    if len(data) < 12 or data[0] >> 6 != 2 or not data[0] & 0x10:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if start + 4 > len(data):
        return None
    profile, words = struct.unpack_from("!HH", data, start)
    end = start + 4 + 4 * words
    return (start, profile, end) if end <= len(data) else None


def payload_size(data: bytes) -> int:
    """The payload bytes of an RTP packet: after the fixed header, CSRCs and extensions."""
    block = _extension_block(data)
    header = block[2] if block is not None else 12 + 4 * (data[0] & 0x0F)
    return max(0, len(data) - header)


def read_sequence(data: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number of an RTP packet (one-byte extension ``ext_id``)."""
    block = _extension_block(data)
    if block is None or block[1] != 0xBEDE:
        return None
    pos, end = block[0] + 4, block[2]
    while pos < end:
        head = data[pos]
        if head == 0:
            pos += 1
            continue
        x_id, length = head >> 4, (head & 0x0F) + 1
        if x_id == 15:
            return None  # "stop parsing"
        if x_id == ext_id and length == 2 and pos + 3 <= end:
            return int(struct.unpack_from("!H", data, pos + 1)[0])
        pos += 1 + length
    return None


def stamp_sequence(data: bytes, ext_id: int, seq: int) -> bytes | None:
    """``data`` (a plain RTP packet) with a transport-wide sequence number added as a
    one-byte extension element; None for a packet that cannot take one (two-byte
    extensions, a malformed header)."""
    if not 1 <= ext_id <= 14:
        raise ValueError(f"a one-byte extension id is 1..14, got {ext_id}")
    element = bytes([ext_id << 4 | 1]) + struct.pack("!H", seq & 0xFFFF)
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    if not data[0] & 0x10:
        start = 12 + 4 * (data[0] & 0x0F)
        if start > len(data):
            return None
        elements = element + bytes(-len(element) % 4)
        head = bytes([data[0] | 0x10]) + data[1:start]
        return head + struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements + data[start:]
    block = _extension_block(data)
    if block is None or block[1] != 0xBEDE:
        return None
    start, _, end = block
    elements = data[start + 4 : end].rstrip(b"\0") + element
    elements += bytes(-len(elements) % 4)
    return data[:start] + struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements + data[end:]


_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", re.M)
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([\w-]+)/", re.M)
_NOT_MEDIA = {"rtx", "red", "ulpfec", "flexfec-03"}  # repair formats: no feedback of their own


def _sections(sdp: str) -> list[str]:
    """The session part, then each m-section, as text (joined back they are ``sdp``)."""
    return re.split(r"(?m)^(?=m=)", sdp)


def _section_id(section: str) -> int | None:
    for ext_id, uri in _EXTMAP.findall(section):
        if uri == TRANSPORT_CC_URI:
            return int(ext_id)
    return None


def transport_cc_id(sdp: str, kind: str = "audio") -> int | None:
    """The extension id negotiated for transport-wide sequence numbers on the first
    ``kind`` m-section of ``sdp`` (None: not negotiated there)."""
    for section in _sections(sdp)[1:]:
        if section.startswith(f"m={kind} "):
            return _section_id(section)
    return None


def negotiated_id(pc: Any, kind: str = "audio") -> int | None:
    """The transport-wide sequence number extension id of ``kind`` on ``pc`` (an aiortc
    peer with both descriptions set) where both negotiated it, else None."""
    local, remote = pc.localDescription, pc.remoteDescription
    if local is None or remote is None:
        return None
    ext_id = transport_cc_id(local.sdp, kind)
    same = ext_id is not None and ext_id == transport_cc_id(remote.sdp, kind)
    return ext_id if same else None


def add_transport_cc(
    sdp: str, *, offer: str | None = None, kinds: tuple[str, ...] = ("audio",)
) -> str:
    """``sdp`` with transport-wide sequence numbers negotiated on its m-sections of
    ``kinds`` (the extension, and ``transport-cc`` feedback for each media format; by
    default the voice only: a browser then keeps its REMB for the video). For an answer
    pass the ``offer``: a section gets it only where the offer's has it, under its id."""
    offered: list[int | None] = []
    if offer is not None:
        offered = [_section_id(section) for section in _sections(offer)[1:]]
    used = {int(i) for i, _ in _EXTMAP.findall(sdp)}
    free = next(i for i in range(1, 15) if i not in used)
    eol = "\r\n" if "\r\n" in sdp else "\n"
    parts = _sections(sdp)
    for k, section in enumerate(parts):
        if k == 0 or not section.startswith(tuple(f"m={kind} " for kind in kinds)):
            continue
        if _section_id(section) is not None:
            continue
        if offer is None:
            ext_id: int | None = free
        else:  # the answer's sections follow the offer's, in order
            ext_id = offered[k - 1] if k - 1 < len(offered) else None
        if ext_id is None:
            continue
        lines = section.split(eol)
        extra = [f"a=extmap:{ext_id} {TRANSPORT_CC_URI}"]
        extra += [
            f"a=rtcp-fb:{pt} transport-cc"
            for pt, name in _RTPMAP.findall(section)
            if name.lower() not in _NOT_MEDIA
        ]
        # after the last attribute line (a section ends with its line break)
        last = max(i for i, line in enumerate(lines) if line)
        parts[k] = eol.join(lines[: last + 1] + extra + lines[last + 1 :])
    return "".join(parts)
