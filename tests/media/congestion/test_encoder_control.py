"""Live encoders (rate changes without keyframes) and the RTCP monitor."""

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.codecs import get_decoder
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from media.aiortc_hooks import sender_encoder, transceiver_codecs
from media.congestion.encoder_control import (
    LiveH264Encoder,
    LiveVp8Encoder,
    RtcpMonitor,
    install_encoder,
    make_encoder,
)
from media.congestion.vpx_live import VpxVp8Encoder

pytestmark = pytest.mark.timeout(60)

FPS = 25


def textured(i: int, size: int = 256) -> np.ndarray:
    """Moving, noisy content: the encoder cannot make it tiny."""
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack(
        [
            np.sin(x / 9 + i * 0.3) * 60 + 128,
            (x + y + i * 7) % 256,
            np.cos(y / 7 - i * 0.2) * 90 + 128,
        ],
        -1,
    )
    noise = np.random.default_rng(i).integers(-25, 25, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def vframe(i: int, size: int = 256) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(textured(i, size), format="rgb24")
    f.pts = i * (90000 // FPS)
    f.time_base = fractions.Fraction(1, 90000)
    return f


def kbps(sizes: list[int]) -> float:
    return sum(sizes) * 8 * FPS / len(sizes) / 1000


def run_encoder(enc, n: int, *, change_at: dict[int, int], size_at: dict[int, int] | None = None):  # type: ignore[no-untyped-def]
    """Encode n frames; returns per-frame payload byte counts."""
    sizes = []
    size = 256
    for i in range(n):
        if i in change_at:
            enc.set_bitrate(change_at[i])
        if size_at and i in size_at:
            size = size_at[i]
        payloads, ts = enc.encode(vframe(i, size))
        assert ts == i * (90000 // FPS)
        sizes.append(sum(len(p) for p in payloads))
    return sizes


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_bitrate_follows_without_keyframes(mime: str) -> None:
    enc = make_encoder(mime, bitrate=1_500_000, max_bitrate=1_500_000)
    sizes = run_encoder(enc, 150, change_at={50: 200_000, 100: 1_000_000})
    high, low, back = kbps(sizes[10:50]), kbps(sizes[65:100]), kbps(sizes[115:150])
    assert low < 0.45 * high, (high, low)
    assert back > 2 * low, (low, back)
    assert enc.stats.keyframes == 1  # only the very first frame
    assert enc.stats.bitrate_changes == 2
    assert not hasattr(enc, "target_bitrate")  # aiortc's REMB handler must not drive it


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_keyframe_on_resize_and_when_forced(mime: str) -> None:
    now = [100.0]
    enc = make_encoder(mime, bitrate=500_000, max_bitrate=1_000_000, time_fn=lambda: now[0])
    run_encoder(enc, 20, change_at={}, size_at={10: 128})
    assert enc.stats.keyframes == 2 and enc.stats.resolution_changes == 1
    now[0] += 1.0
    enc.encode(vframe(20, 128), force_keyframe=True)
    assert enc.stats.keyframes == 3 and enc.stats.forced_keyframes == 1


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_keyframe_requests_are_throttled_and_wait_for_a_pause(mime: str) -> None:
    """A receiver behind a full queue asks again and again: one keyframe per interval,
    and none while the sender drains (the request is served when the pause ends)."""
    now = [100.0]
    enc = make_encoder(mime, bitrate=500_000, max_bitrate=1_000_000, time_fn=lambda: now[0])
    enc.encode(vframe(0, 128))  # the first frame is a keyframe
    for i in range(1, 6):  # asked for on every frame within 0.2 s of it
        now[0] += 0.04
        enc.encode(vframe(i, 128), force_keyframe=True)
    assert enc.stats.keyframes == 1
    now[0] += 0.5
    enc.encode(vframe(6, 128))  # the pending request is served once the interval is over
    assert enc.stats.keyframes == 2 and enc.stats.forced_keyframes == 1
    enc.pause(1.0)
    now[0] += 0.6
    enc.encode(vframe(7, 128), force_keyframe=True)  # paused: skipped, request kept
    assert enc.stats.paused == 1 and enc.stats.keyframes == 2
    now[0] += 0.5
    enc.encode(vframe(8, 128))
    assert enc.stats.keyframes == 3 and enc.stats.forced_keyframes == 2


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_a_pause_can_end_early(mime: str) -> None:
    """The queue probe saw the bottleneck empty: the next frame goes out at once."""
    now = [100.0]
    enc = make_encoder(mime, bitrate=500_000, max_bitrate=1_000_000, time_fn=lambda: now[0])
    enc.encode(vframe(0, 128))
    enc.pause(1.0)
    now[0] += 0.1
    enc.encode(vframe(1, 128))
    assert enc.stats.paused == 1 and enc.stats.frames == 1
    enc.resume()
    now[0] += 0.04
    enc.encode(vframe(2, 128))
    assert enc.stats.paused == 1 and enc.stats.frames == 2
    enc.resume()  # without a pause: nothing to end, and no pause starts
    enc.encode(vframe(3, 128))
    assert enc.stats.frames == 3


def test_vp8_stream_decodes_across_rate_and_size_changes() -> None:
    enc = LiveVp8Encoder(bitrate=800_000)
    decoder = get_decoder(
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    )
    shapes = []
    for i in range(30):
        if i == 10:
            enc.set_bitrate(150_000)
        size = 256 if i < 20 else 192
        payloads, ts = enc.encode(vframe(i, size))
        data = b"".join(vp8_depayload(p) for p in payloads)
        for out in decoder.decode(JitterFrame(data=data, timestamp=ts)):
            assert isinstance(out, av.VideoFrame)
            shapes.append((out.height, out.width))
    assert len(shapes) == 30
    assert shapes[0] == (256, 256) and shapes[-1] == (192, 192)


def _scene_cut_stream(enc: VpxVp8Encoder) -> list[tuple[bytes, bool, int]]:
    """20 frames of one scrolling picture, then another one (a cut) and 9 frames of it."""
    out, scenes = [], (textured(0), np.ascontiguousarray(textured(1).transpose(1, 0, 2)))
    for i in range(30):
        img = np.ascontiguousarray(np.roll(scenes[i >= 20], 2 * i, axis=1))
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        ts = i * (90000 // FPS)
        data, key = enc.encode(frame, ts)
        out.append((data, key, ts))
    return out


def test_a_scene_cut_goes_as_a_capped_keyframe_not_a_huge_inter_frame() -> None:
    budget = 300_000 / 8 / FPS  # one frame's share of 300 kbps
    plain = _scene_cut_stream(VpxVp8Encoder(256, 256, 300_000, max_frame_ratio=None))
    assert not plain[20][1] and len(plain[20][0]) > 4 * budget  # what libvpx does alone
    enc = VpxVp8Encoder(256, 256, 300_000)
    stream = _scene_cut_stream(enc)
    assert stream[20][1] and len(stream[20][0]) <= 4 * budget, len(stream[20][0])
    assert enc.reencoded == 1 and sum(key for _, key, _ in stream) == 2  # first frame, cut
    decoder = get_decoder(
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    )
    decoded = [
        out
        for data, _, ts in stream
        if data
        for out in decoder.decode(JitterFrame(data=data, timestamp=ts))
    ]
    assert len(decoded) == sum(1 for data, _, _ in stream if data) >= 28
    with pytest.raises(ValueError, match="max_frame_ratio"):
        VpxVp8Encoder(256, 256, 300_000, max_frame_ratio=2.0)


def test_only_an_outlier_inter_frame_is_coded_again() -> None:
    """The big frame refining a keyframe (after a lossy link's PLI) is no cut; an inter frame
    over 4x its budget and 3x the recent ones is, and only that one is coded twice."""
    enc = VpxVp8Encoder(64, 64, 100_000)  # 500 B a frame at 25 fps: 2 kB is 4x
    made = iter(
        [
            *[(900, True), (2_500, False), (300, False), (310, False), (290, False)],
            *[(2_600, False), (800, True), (300, False)],
        ]
    )
    calls: list[bool] = []

    def fake(img: int, pts: int, keyframe: bool) -> tuple[bytes, bool]:
        calls.append(keyframe)
        size, key = next(made)
        return b"x" * size, key

    enc._encode = fake  # type: ignore[method-assign]
    frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
    out = [enc.encode(frame, i * 3600) for i in range(7)]
    assert [len(d) for d, _ in out] == [900, 2_500, 300, 310, 290, 800, 300]
    assert enc.reencoded == 1 and calls == [False] * 6 + [True, False]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no live encoder"):
        make_encoder("video/AV1", bitrate=500_000, max_bitrate=500_000)
    with pytest.raises(ValueError, match="10 kbps"):
        LiveVp8Encoder(bitrate=5)
    with pytest.raises(ValueError, match="above max_bitrate"):
        LiveH264Encoder(bitrate=2_000_000, max_bitrate=1_000_000)


class FakeSender:
    """The sender surface RtcpMonitor and install_encoder touch."""

    kind = "video"

    def __init__(self) -> None:
        self._ssrc = 1234
        self._RTCRtpSender__encoder = None
        self.count_sent(0, 0)
        self.handled: list = []
        self.sent: list = []

    def count_sent(self, octets: int, packets: int) -> None:
        """What aiortc's sender counts for its sender reports (``sender_counts`` reads it)."""
        self._RTCRtpSender__octet_count = octets
        self._RTCRtpSender__packet_count = packets

    async def _handle_rtcp_packet(self, packet) -> None:  # type: ignore[no-untyped-def]
        self.handled.append(packet)

    async def _send_rtcp(self, packets) -> None:  # type: ignore[no-untyped-def]
        self.sent.extend(packets)


async def test_rtcp_monitor_delivered_rate_is_in_payload_bytes() -> None:
    """Packets the receiver got between two reports x the mean payload sent lately: the
    unit REMB and the encoder's rate are in."""
    now = [10.0]
    sender = FakeSender()
    mon = RtcpMonitor(sender, time_fn=lambda: now[0])  # type: ignore[arg-type]

    def report(received: int) -> RtcpRrPacket:
        info = RtcpReceiverInfo(
            ssrc=1234,
            fraction_lost=0,
            packets_lost=0,
            highest_sequence=received,
            jitter=0,
            lsr=0,
            dlsr=0,
        )
        return RtcpRrPacket(ssrc=9, reports=[info])

    await sender._handle_rtcp_packet(report(100))
    sender.count_sent(100_000, 100)
    now[0] = 11.0
    await sender._handle_rtcp_packet(report(150))  # 50 packets of 1000 B in 1 s
    assert mon.take().delivered_bps == pytest.approx(400_000)


async def test_rtcp_monitor_reads_rr_rtt_and_remb() -> None:
    now = [100.0]
    sender = FakeSender()
    mon = RtcpMonitor(sender, time_fn=lambda: now[0])  # type: ignore[arg-type]
    ntp = (0x12345678 << 32) | 0x9ABC0000
    sr = RtcpSrPacket(ssrc=1234, sender_info=RtcpSenderInfo(ntp, 0, 0, 0))
    await sender._send_rtcp([sr])
    assert sender.sent == [sr]  # still sent
    now[0] = 100.35
    lsr = (ntp >> 16) & 0xFFFFFFFF
    rr = RtcpRrPacket(
        ssrc=9,
        reports=[
            RtcpReceiverInfo(
                ssrc=1234,
                fraction_lost=64,
                packets_lost=3,
                highest_sequence=1,
                jitter=900,
                lsr=lsr,
                dlsr=int(0.1 * 65536),
            ),
            RtcpReceiverInfo(
                ssrc=555,
                fraction_lost=255,
                packets_lost=0,
                highest_sequence=1,
                jitter=0,
                lsr=0,
                dlsr=0,
            ),
        ],
    )
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=pack_remb_fci(321_000, [1234])
    )
    other = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=pack_remb_fci(1, [77]))
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1234)
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1234)
    nack.lost = [5, 6, 9]
    for p in (rr, remb, other, pli, nack):
        await sender._handle_rtcp_packet(p)
    assert sender.handled == [rr, remb, other, pli, nack]  # aiortc still sees everything
    snap = mon.take()
    assert snap.fraction_lost == pytest.approx(0.25)
    assert snap.jitter_s == pytest.approx(0.01)
    assert snap.rtt_s == pytest.approx(0.25, abs=1e-3)
    assert snap.remb_bps == 321_000
    assert snap.reports == 1
    assert snap.nacked == 3
    assert mon.take().rtt_s is None  # nothing new


def test_install_encoder_fills_the_senders_slot_once() -> None:
    sender = FakeSender()
    enc = install_encoder(sender, "video/VP8", bitrate=300_000, max_bitrate=2_000_000)  # type: ignore[arg-type]
    assert sender_encoder(sender) is enc  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="already encodes"):
        install_encoder(sender, "video/VP8", bitrate=300_000, max_bitrate=2_000_000)  # type: ignore[arg-type]


async def test_live_sender_over_loopback_keeps_one_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real aiortc pair: rate changes on the live VP8 encoder reach the wire, no keyframes."""
    from aiortc import VideoStreamTrack

    from tests.rtc_helpers import loopback_pc, patch_loopback_ice

    patch_loopback_ice(monkeypatch)

    class Pattern(VideoStreamTrack):
        i = 0

        async def recv(self) -> av.VideoFrame:
            pts, tb = await self.next_timestamp()
            f = av.VideoFrame.from_ndarray(textured(self.i, 128), format="rgb24")
            self.i += 1
            f.pts, f.time_base = pts, tb
            return f

    a, b = loopback_pc(), loopback_pc()
    sender = a.addTrack(Pattern())
    got: list[int] = []
    enough = asyncio.Event()
    want = [20]
    tasks: list[asyncio.Task[None]] = []

    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        async def drain() -> None:
            while True:
                await track.recv()
                got.append(1)
                if len(got) >= want[0]:
                    enough.set()

        tasks.append(asyncio.ensure_future(drain()))

    b.on("track", on_track)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    mime = transceiver_codecs(a.getTransceivers()[0])[0].mimeType
    enc = install_encoder(sender, mime, bitrate=600_000, max_bitrate=1_000_000)
    try:
        async with asyncio.timeout(20):
            await enough.wait()
            enc.set_bitrate(150_000)
            enough.clear()
            want[0] = len(got) + 20
            await enough.wait()
    finally:
        for t in tasks:
            t.cancel()
        await a.close()
        await b.close()
    assert enc.stats.frames >= 40
    assert enc.stats.keyframes - enc.stats.forced_keyframes == 1


def _voice_kbps(encoder: object) -> float:
    """Bits per second ``encoder`` makes of 2 s of a speech-like signal (48 kHz, stereo)."""
    t = np.arange(960) / 48000
    total = 0
    for k in range(100):
        tone = np.sin(2 * np.pi * (180 + 40 * np.sin(k / 7)) * (t + k * 0.02))
        noise = np.random.default_rng(k).normal(0, 0.2, 960)
        pcm = ((tone * 0.5 + noise) * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(pcm, 2)[None, :], format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)  # type: ignore[attr-defined]
        total += sum(len(p) for p in payloads)
    return total * 8 / 2.0 / 1000


def test_install_voice_encoder_sets_the_voice_bitrate() -> None:
    from aiortc.codecs.opus import OpusEncoder

    from media.congestion.encoder_control import install_voice_encoder

    sender = FakeSender()
    sender.kind = "audio"  # type: ignore[misc]
    enc = install_voice_encoder(sender, bitrate=32_000)  # type: ignore[arg-type]
    assert sender_encoder(sender) is enc  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="already encodes"):
        install_voice_encoder(sender)  # type: ignore[arg-type]
    ours, stock = _voice_kbps(enc), _voice_kbps(OpusEncoder())
    assert 24 < ours < 40 and stock > 1.8 * ours  # aiortc's runs at 96 kbps
    with pytest.raises(ValueError, match="audio sender"):
        install_voice_encoder(FakeSender())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="within 6"):
        install_voice_encoder(sender, bitrate=1_000)  # type: ignore[arg-type]


def _silk_lbrr(packet: bytes) -> bool | None:
    """The LBRR (in-band FEC) flag of a one-frame 20 ms mono Opus packet with a SILK layer,
    read with the range decoder of RFC 6716 4.1 (the VAD flag, then the LBRR flag, each
    one bit at probability 1/2); None for a CELT-only packet."""
    toc = packet[0]
    if toc >> 3 >= 16 or toc & 3 != 0:  # CELT-only, or more than one frame
        return None
    data, pos = packet[1:], 0

    def byte() -> int:
        nonlocal pos
        pos += 1
        return data[pos - 1] if pos <= len(data) else 0

    rem = byte()
    rng, val = 128, 127 - (rem >> 1)

    def normalize() -> None:
        nonlocal rng, val, rem
        while rng <= 1 << 23:
            rng <<= 8
            sym = rem
            rem = byte()
            sym = ((sym << 8) | rem) >> 1
            val = ((val << 8) + (255 & ~sym)) & ((1 << 31) - 1)

    def bit() -> bool:
        nonlocal rng, val
        s = rng >> 1
        one = val < s
        if not one:
            val -= s
        rng = s if one else rng - s
        normalize()
        return one

    normalize()
    bit()  # the frame's VAD flag
    return bit()


def test_voice_fec_puts_a_copy_of_the_last_frame_in_each_packet() -> None:
    from media.congestion.encoder_control import install_voice_encoder

    def lbrr_flags(fec: int | None) -> list[bool | None]:
        sender = FakeSender()
        sender.kind = "audio"  # type: ignore[misc]
        enc = install_voice_encoder(sender, bitrate=32_000, fec_loss_pct=fec)  # type: ignore[arg-type]
        flags = []
        t = np.arange(960) / 48000
        for k in range(60):
            tone = np.sin(2 * np.pi * (180 + 40 * np.sin(k / 7)) * (t + k * 0.02))
            pcm = (tone * 0.5 * 12000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                np.repeat(pcm, 2)[None, :], format="s16", layout="stereo"
            )
            frame.sample_rate, frame.pts = 48000, k * 960
            frame.time_base = fractions.Fraction(1, 48000)
            payloads, _ = enc.encode(frame)
            flags += [_silk_lbrr(p) for p in payloads]
        return flags

    with_fec, without = lbrr_flags(10), lbrr_flags(None)
    assert all(f is not None for f in with_fec)  # a voice at 32 kbps is coded with SILK
    assert sum(bool(f) for f in with_fec[5:]) >= 0.8 * len(with_fec[5:])
    assert not any(without)
    audio = FakeSender()
    audio.kind = "audio"  # type: ignore[misc]
    with pytest.raises(ValueError, match="fec_loss_pct"):
        install_voice_encoder(audio, fec_loss_pct=0)  # type: ignore[arg-type]


def test_offers_inband_fec_reads_the_opus_fmtp() -> None:
    from media.congestion.encoder_control import offers_inband_fec

    chrome = "v=0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    assert offers_inband_fec(chrome, 111)
    assert not offers_inband_fec(chrome, 112)  # another payload type
    assert not offers_inband_fec(chrome.replace("useinbandfec=1", "useinbandfec=0"), 111)
    assert not offers_inband_fec("a=rtpmap:111 opus/48000/2\r\n", 111)  # no fmtp


async def test_rtcp_monitor_measures_loss_over_half_a_second() -> None:
    """A browser sends a receiver report with every RTCP message (~70 ms apart): over such an
    interval one lost packet of two reads 50 %. The monitor takes the reports' cumulative
    counts over at least half a second instead."""
    now = [50.0]
    sender = FakeSender()
    mon = RtcpMonitor(sender, time_fn=lambda: now[0])  # type: ignore[arg-type]

    def report(highest: int, lost: int, fraction: int) -> RtcpRrPacket:
        info = RtcpReceiverInfo(
            ssrc=1234,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=highest,
            jitter=0,
            lsr=0,
            dlsr=0,
        )
        return RtcpRrPacket(ssrc=9, reports=[info])

    await sender._handle_rtcp_packet(report(1000, 0, 0))
    assert mon.take().fraction_lost == 0.0  # the first report's own fraction
    seen = []
    for k in range(1, 15):  # every 70 ms, 14 packets; one lost every 50 packets
        now[0] += 0.07
        highest = 1000 + 14 * k
        await sender._handle_rtcp_packet(report(highest, (highest - 1000) // 50, 128))
        snap = mon.take()
        if snap.fraction_lost is not None:
            seen.append(snap.fraction_lost)
    assert len(seen) == 1  # once the window reached 0.5 s (8 reports), not per report
    assert seen[0] == pytest.approx(2 / 112)
    # a restarted receiver (sequence back down) starts a new window, no reading
    now[0] += 1.0
    await sender._handle_rtcp_packet(report(10, 0, 0))
    assert mon.take().fraction_lost is None
    now[0] += 0.6
    await sender._handle_rtcp_packet(report(110, 10, 0))
    assert mon.take().fraction_lost == pytest.approx(0.1)
