"""The mic path over a lossy relay: no latency kept after loss (aiortc's buffer keeps it).

MicIngest reads its track as fast as frames come (tests/media/test_ingest.py), so the
latency it sees is the receiver's: measured here on the track, frame pts vs arrival.
"""

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.congestion.jitter import install_audio_jitter_buffer
from tests.harness.netem import Impairment, UdpRelay, connect_via_relay
from tests.rtc_helpers import loopback_pc, patch_loopback_ice

pytestmark = pytest.mark.timeout(60)


class Mic(MediaStreamTrack):
    """20 ms 48 kHz frames paced in real time; frame k carries the value k in every sample."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._k = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._k * 0.02 - time.monotonic()))
        tone = np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000
        f = av.AudioFrame.from_ndarray(tone.astype(np.int16).reshape(1, -1), layout="mono")
        f.sample_rate = 48000
        f.pts = self._k * 960
        f.time_base = fractions.Fraction(1, 48000)
        self._k += 1
        return f


async def added_latency(monkeypatch: pytest.MonkeyPatch, *, ours: bool) -> float:
    """Seconds the mic path fell behind real time after a 5 %-loss second (end minus start)."""
    patch_loopback_ice(monkeypatch)
    a, b = loopback_pc(), loopback_pc()
    a.addTrack(Mic())
    arrivals: list[tuple[float, float]] = []  # (arrival, media time of the frame)
    tasks: list[asyncio.Task[None]] = []

    def on_track(track: MediaStreamTrack) -> None:
        async def consume() -> None:
            while True:  # what MicIngest's receive task does: read as soon as frames come
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                assert frame.pts is not None
                arrivals.append((time.monotonic(), frame.pts / 48000))

        tasks.append(asyncio.ensure_future(consume()))

    b.on("track", on_track)
    relay = UdpRelay(seed=5)
    await relay.start()

    def negotiated() -> None:
        if ours:
            for tr in b.getTransceivers():
                install_audio_jitter_buffer(tr.receiver)

    try:
        async with asyncio.timeout(20):
            await connect_via_relay(a, b, relay, negotiated=negotiated)
        await asyncio.sleep(1.0)
        relay.impair(a_to_b=Impairment(loss=0.05))
        await asyncio.sleep(1.5)
        relay.impair(a_to_b=Impairment())
        await asyncio.sleep(1.5)
    finally:
        for t in tasks:
            t.cancel()
        await a.close()
        await b.close()
        relay.close()
    assert len(arrivals) > 100
    # latency = arrival time - media time of the frame (up to a constant): compare the
    # first half-second with the last half-second
    offsets = [t - media for t, media in arrivals]
    t_end = arrivals[-1][0]
    early = min(o for (t, _), o in zip(arrivals, offsets, strict=True) if t < arrivals[0][0] + 0.5)
    late = min(o for (t, _), o in zip(arrivals, offsets, strict=True) if t > t_end - 0.5)
    return late - early


async def test_stock_buffer_keeps_latency_ours_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = await added_latency(monkeypatch, ours=True)
    stock = await added_latency(monkeypatch, ours=False)
    assert ours < 0.06, ours
    assert stock > 0.15, stock  # aiortc's buffer holds ~16 packets after a loss
