"""VideoPacer: video leaves at a paced rate, audio and RTCP never wait, stamps are fresh."""

import asyncio
import time

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.congestion.pacer import VideoPacer

VIDEO, RTX, AUDIO = 0x1111, 0x2222, 0x3333
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.closed = False

    async def _send_rtp(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        self.sent.append((time.monotonic(), data))


class FakeSender:
    kind = "video"

    def __init__(self, extensions: HeaderExtensionsMap) -> None:
        self.transport = FakeTransport()
        self._ssrc, self._rtx_ssrc = VIDEO, RTX
        self._RTCRtpSender__rtp_header_extensions_map = extensions


def ext_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    ext = RTCRtpHeaderExtensionParameters(id=3, uri=ABS_SEND_TIME)
    m.configure(RTCRtpParameters(headerExtensions=[ext]))
    return m


def packet(ssrc: int, seq: int, size: int = 1200, stamp: int | None = 0) -> bytes:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq)
    p.ssrc = ssrc
    p.payload = bytes(size - 12)
    p.extensions.abs_send_time = stamp
    return p.serialize(ext_map())


async def all_sent(pacer: VideoPacer, n: int, within_s: float = 2.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if pacer.stats.sent >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pacer.stats.sent} of {n} packets sent within {within_s} s")


def make(bitrate: float = 480_000, **kw: float) -> tuple[FakeSender, VideoPacer]:
    sender = FakeSender(ext_map())
    return sender, VideoPacer(sender, lambda: bitrate, **kw)  # type: ignore[arg-type]


async def test_a_burst_of_video_leaves_at_the_paced_rate() -> None:
    sender, pacer = make(480_000, factor=1.0, max_queue_s=5.0, burst_s=0.0)
    t0 = time.monotonic()
    for seq in range(10):  # one 12 kB frame, handed over at once
        await sender.transport._send_rtp(packet(VIDEO, seq))
    assert len(sender.transport.sent) == 0  # nothing leaves inside the call
    await all_sent(pacer, 10)
    times = [t for t, _ in sender.transport.sent]
    # 1200 B at 480 kbps = 20 ms apart: 9 gaps = 180 ms at least (sleeps only run late)
    assert times[-1] - times[0] >= 0.17
    assert times[-1] - t0 < 1.0
    assert [RtpPacket.parse(d).sequence_number for _, d in sender.transport.sent] == list(range(10))
    await pacer.close()


async def test_audio_and_rtcp_do_not_wait_behind_video() -> None:
    sender, pacer = make(240_000, factor=1.0, max_queue_s=5.0)
    for seq in range(10):
        await sender.transport._send_rtp(packet(VIDEO, seq))
    await sender.transport._send_rtp(packet(AUDIO, 1, size=120))
    rtcp = bytes([0x80, 200]) + bytes(26)  # a sender report's header
    await sender.transport._send_rtp(rtcp)
    await asyncio.sleep(0.05)
    ssrcs = [int.from_bytes(d[8:12]) for _, d in sender.transport.sent if d != rtcp]
    assert AUDIO in ssrcs[:3] and rtcp in [d for _, d in sender.transport.sent]
    assert pacer.queue_s > 0 and pacer.stats.sent < 10
    await pacer.close()


async def test_retransmissions_go_first_but_are_paced_too() -> None:
    sender, pacer = make(240_000, factor=1.0, max_queue_s=5.0, burst_s=0.0)
    for seq in range(100, 108):  # a frame waiting in the queue
        await sender.transport._send_rtp(packet(VIDEO, seq))
    await sender.transport._send_rtp(packet(VIDEO, 90))  # resent on the media SSRC
    await sender.transport._send_rtp(packet(RTX, 5))  # resent on the RTX SSRC
    await asyncio.sleep(0.01)
    assert pacer.stats.sent <= 2  # still paced
    await pacer.close()  # close sends what waited, in queue order
    order = [
        (int.from_bytes(d[8:12]), RtpPacket.parse(d).sequence_number)
        for _, d in sender.transport.sent
    ]
    assert len(order) == 10
    # both repairs leave before the frame's packets that were still waiting
    assert order.index((RTX, 5)) < order.index((VIDEO, 103))
    assert order.index((VIDEO, 90)) < order.index((VIDEO, 103))
    assert [sq for ss, sq in order if ss == VIDEO and sq >= 100] == list(range(100, 108))


async def test_the_queue_is_bounded_in_time() -> None:
    # 60 kB at 1.5 x 48 kbps would take 6.7 s; the queue limit sends it within ~0.3 s
    sender, pacer = make(48_000, factor=1.5, max_queue_s=0.3)
    for seq in range(50):
        await sender.transport._send_rtp(packet(VIDEO, seq))
    await all_sent(pacer, 50, within_s=2.0)
    assert pacer.stats.max_queue_s < 0.6
    await pacer.close()


async def test_abs_send_time_is_stamped_when_the_packet_leaves() -> None:
    sender, pacer = make(2_000_000)
    await sender.transport._send_rtp(packet(VIDEO, 1, stamp=0))
    await sender.transport._send_rtp(packet(VIDEO, 2, stamp=None))  # no extension: unchanged
    await asyncio.sleep(0.05)
    first, second = (RtpPacket.parse(d, ext_map()) for _, d in sender.transport.sent)
    assert first.extensions.abs_send_time not in (None, 0)
    assert second.extensions.abs_send_time is None
    assert len(first.payload) == 1188
    await pacer.close()


async def test_flush_drops_what_waits_and_close_gives_the_transport_back() -> None:
    sender, pacer = make(100_000, factor=1.0, max_queue_s=5.0)
    inner = pacer._inner
    for seq in range(10):
        await sender.transport._send_rtp(packet(VIDEO, seq))
    await asyncio.sleep(0.01)
    dropped = pacer.flush()
    assert dropped >= 8 and pacer.stats.flushed == dropped and pacer.queue_s == 0
    await pacer.close()
    assert sender.transport._send_rtp == inner
    sent = len(sender.transport.sent)
    await sender.transport._send_rtp(packet(VIDEO, 99))  # straight through now
    assert len(sender.transport.sent) == sent + 1


async def test_a_closed_transport_reaches_the_sender() -> None:
    """aiortc's send loop ends on ConnectionError; the pacer must not swallow it for good."""
    sender, pacer = make(2_000_000)
    sender.transport.closed = True
    await sender.transport._send_rtp(packet(VIDEO, 1))  # queued; the pacer's send fails
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionError):
        await sender.transport._send_rtp(packet(VIDEO, 2))
    assert pacer.queue_s == 0
    await pacer.close()


async def test_bad_arguments() -> None:
    sender = FakeSender(ext_map())
    with pytest.raises(ValueError, match="factor"):
        VideoPacer(sender, lambda: 1.0, factor=0.5)  # type: ignore[arg-type]
    sender.kind = "audio"  # type: ignore[misc]
    with pytest.raises(ValueError, match="video senders"):
        VideoPacer(sender, lambda: 1.0)  # type: ignore[arg-type]


async def test_a_saturated_link_gets_the_smaller_factor() -> None:
    full = False
    sender = FakeSender(ext_map())
    pacer = VideoPacer(
        sender,  # type: ignore[arg-type]
        lambda: 480_000,
        factor=4.0,
        saturated=lambda: full,
        saturated_factor=1.0,
        max_queue_s=5.0,
        burst_s=0.0,
    )

    async def frame_spread(first_seq: int) -> float:
        start = len(sender.transport.sent)
        for seq in range(first_seq, first_seq + 10):  # one 12 kB frame at once
            await sender.transport._send_rtp(packet(VIDEO, seq))
        await all_sent(pacer, start + 10)
        times = [t for t, _ in sender.transport.sent[start:]]
        return times[-1] - times[0]

    # 9 gaps of 1200 B: at 4 x 480 kbps 45 ms, at 1 x 180 ms (sleeps only run late)
    assert await frame_spread(0) < 0.15
    full = True
    assert await frame_spread(10) >= 0.17
    await pacer.close()
