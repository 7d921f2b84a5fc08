"""Mic jitter buffer: latency after a loss stays bounded (aiortc's keeps it)."""

import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.congestion.jitter import LowLatencyJitterBuffer, install_audio_jitter_buffer


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(
        payload_type=111, sequence_number=seq & 0xFFFF, timestamp=(seq * 960) & 0xFFFFFFFF
    )
    p.payload = seq.to_bytes(4, "big", signed=True)
    p._data = p.payload  # type: ignore[attr-defined]
    return p


def lag_after(buffer, lost: set[int], n: int = 120, start: int = 65500) -> list[int]:  # type: ignore[no-untyped-def]
    """Feed packets start..start+n (minus ``lost``) one per tick; per output, how many
    packets behind the newest arrival it is."""
    lags = []
    for k in range(n):
        seq = start + k
        if k in lost:
            continue
        _, frame = buffer.add(packet(seq))
        if frame is not None:
            out_k = (int.from_bytes(frame.data, "big", signed=True) - start) % 65536
            lags.append(k - out_k)
    return lags


def test_aiortc_buffer_keeps_the_backlog_ours_does_not() -> None:
    lost = {30}
    theirs = lag_after(JitterBuffer(capacity=16, prefetch=4), lost)
    ours = lag_after(LowLatencyJitterBuffer(max_wait_packets=3), lost)
    assert theirs[-1] >= 10  # aiortc: ~15 frames (300 ms) behind for good
    assert ours[-1] == 0 and max(ours) == 0  # released as it arrives, also across the wrap


def test_gap_waits_then_skips_and_late_packets_are_dropped() -> None:
    buf = LowLatencyJitterBuffer(max_wait_packets=3)
    assert buf.add(packet(1))[1] is not None
    assert buf.add(packet(3))[1] is None  # 2 is missing: wait
    assert buf.add(packet(4))[1] is None
    _, frame = buf.add(packet(5))  # waited 3 packets: skip to the newest
    assert frame is not None and frame.data == (5).to_bytes(4, "big")
    assert buf.skipped == 3
    assert buf.add(packet(2)) == (False, None) and buf.late == 1
    assert buf.add(packet(6))[1] is not None


def test_reorder_within_the_wait_releases_the_newest() -> None:
    buf = LowLatencyJitterBuffer(max_wait_packets=3)
    buf.add(packet(10))
    assert buf.add(packet(12))[1] is None
    _, frame = buf.add(packet(11))  # the gap filled: 11 and 12 ready, 12 goes out
    assert frame is not None and frame.data == (12).to_bytes(4, "big")
    assert buf.skipped == 1


def test_install_checks_the_receiver() -> None:
    with pytest.raises(ValueError, match="max_wait_packets"):
        LowLatencyJitterBuffer(max_wait_packets=0)

    class Receiver:
        track = None

    with pytest.raises(ValueError, match="audio receiver"):
        install_audio_jitter_buffer(Receiver())  # type: ignore[arg-type]


async def test_a_client_gets_low_latency_buffers_on_every_receiver() -> None:
    from aiortc import AudioStreamTrack, RTCPeerConnection, VideoStreamTrack

    from media.aiortc_hooks import receiver_remb_estimator
    from media.congestion.fast_remb import FastRemoteBitrateEstimator
    from media.congestion.jitter import LowLatencyVideoJitterBuffer, install_receive_buffers

    server, client = RTCPeerConnection(), RTCPeerConnection()
    try:
        client.addTransceiver("audio", direction="recvonly")
        client.addTransceiver("video", direction="recvonly")
        client.addTransceiver("audio", direction="sendonly")  # no receiving track: skipped
        await client.setLocalDescription(await client.createOffer())
        await server.setRemoteDescription(client.localDescription)
        server.addTrack(AudioStreamTrack())  # the server sends voice and face, as ours does
        server.addTrack(VideoStreamTrack())
        await server.setLocalDescription(await server.createAnswer())
        await client.setRemoteDescription(server.localDescription)
        installed = install_receive_buffers(client)
        kinds = sorted(type(b).__name__ for b in installed)
        assert kinds == sorted(
            ["FastRemoteBitrateEstimator", "LowLatencyJitterBuffer", "LowLatencyVideoJitterBuffer"]
        )
        estimators = [receiver_remb_estimator(t.receiver) for t in client.getTransceivers()]
        assert sum(isinstance(e, FastRemoteBitrateEstimator) for e in estimators) == 1
        slots = [
            vars(t.receiver)["_RTCRtpReceiver__jitter_buffer"] for t in client.getTransceivers()
        ]
        assert any(isinstance(b, LowLatencyVideoJitterBuffer) for b in slots)
        assert isinstance(slots[0], LowLatencyJitterBuffer)
    finally:
        await client.close()
        await server.close()


def test_padding_packets_give_no_frame_and_keep_the_sequence() -> None:
    """Chromium sends payload-less padding on the mic's stream; an empty frame would end
    the Opus decoder's stream for the rest of the call."""
    from av import AudioFrame
    from av.codec import CodecContext
    from av.packet import Packet

    buf = LowLatencyJitterBuffer(max_wait_packets=3)
    assert buf.add(packet(1))[1] is not None
    empty = packet(2)
    empty.payload = b""
    empty._data = b""  # type: ignore[attr-defined]
    assert buf.add(empty) == (False, None) and buf.padding == 1
    _, frame = buf.add(packet(3))  # no gap waited for, nothing skipped
    assert frame is not None and buf.skipped == 0

    # why it matters: after an empty packet, the decoder refuses every later frame
    encoder = CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    pcm = AudioFrame(format="s16", layout="stereo", samples=960)
    pcm.sample_rate = 48000
    for plane in pcm.planes:
        plane.update(bytes(plane.buffer_size))
    encoded = bytes(next(iter(encoder.encode(pcm))))  # type: ignore[call-overload]
    decoder = CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout, decoder.format = 48000, "stereo", "s16"
    assert decoder.decode(Packet(encoded))  # type: ignore[attr-defined]
    decoder.decode(Packet(b""))  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="End of file"):
        decoder.decode(Packet(encoded))  # type: ignore[attr-defined]
