"""queue_probe: STUN pings that see a bottleneck queue empty, and the drain they end."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection

from media.congestion.jitter import install_receive_buffers
from media.congestion.loop import AdaptationOptions, PeerSession, QualityLoop, attach_quality
from media.congestion.queue_probe import QueueProbe, ice_ping
from tests.harness.netem import Impairment, relayed_call
from tests.rtc_helpers import drain_track, noise_tracks, patch_loopback_ice


class FifoPath:
    """A path whose bottleneck queue empties at ``empty_at`` (loop time): a ping sent at
    ``t`` is answered after ``base + max(0, empty_at - t)``."""

    def __init__(self, base: float, empty_at: float = 0.0) -> None:
        self.base, self.empty_at = base, empty_at
        self.sent: list[float] = []

    async def ping(self, timeout_s: float) -> None:
        now = asyncio.get_running_loop().time()
        self.sent.append(now)
        wait = self.base + max(0.0, self.empty_at - now)
        if wait > timeout_s:
            await asyncio.sleep(timeout_s)
            raise TimeoutError
        await asyncio.sleep(wait)


def _probe(path: FifoPath, **kw: float) -> QueueProbe:
    return QueueProbe(path.ping, time_fn=lambda: asyncio.get_running_loop().time(), **kw)


async def test_round_trips_make_the_baseline_and_a_queue_shows_over_it() -> None:
    path = FifoPath(base=0.01)
    probe = _probe(path)
    assert probe.baseline is None
    rtt = await probe.rtt()
    assert rtt is not None and 0.009 < rtt < 0.05
    path.empty_at = asyncio.get_running_loop().time() + 0.1
    rtt = await probe.rtt()
    assert rtt is not None and probe.baseline is not None and probe.baseline < 0.05
    queue = probe.queue_s(rtt)
    assert queue is not None and 0.08 < queue < 0.15
    assert probe.stats.answered == 2 and probe.stats.failed == 0


async def test_a_failed_ping_is_no_sample() -> None:
    async def lost(timeout_s: float) -> None:
        raise TimeoutError

    probe = QueueProbe(lost)
    assert await probe.rtt() is None
    assert probe.baseline is None and probe.stats.failed == 1


async def test_wait_drained_returns_when_the_queue_ahead_is_gone() -> None:
    loop = asyncio.get_running_loop()
    path = FifoPath(base=0.005)
    probe = _probe(path, interval_s=0.02, margin_s=0.02)
    await probe.rtt()  # the baseline, queue-free
    start = loop.time()
    path.empty_at = start + 0.3  # a 300 ms queue, draining from now
    assert await probe.wait_drained(1.0)
    took = loop.time() - start
    # the first ping sent with <= 20 ms of queue ahead comes back ~5 ms after it
    assert 0.27 < took < 0.45, took
    assert probe.stats.drained == 1
    # pings went out while earlier ones waited in the queue
    assert len([t for t in path.sent if t >= start]) >= 10


async def test_wait_drained_gives_up_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    path = FifoPath(base=0.005)
    probe = _probe(path, interval_s=0.02, margin_s=0.02)
    await probe.rtt()
    path.empty_at = loop.time() + 5.0  # deeper than the deadline
    start = loop.time()
    assert not await probe.wait_drained(0.3)
    assert 0.28 < loop.time() - start < 0.4
    assert probe.stats.undrained == 1


async def test_without_a_baseline_a_round_trip_proves_nothing() -> None:
    path = FifoPath(base=0.005)
    probe = _probe(path, interval_s=0.02)
    assert not await probe.wait_drained(0.2)  # nothing to compare an answer with
    assert probe.stats.undrained == 1
    assert not await QueueProbe(path.ping).wait_drained(0)


def test_options_are_checked() -> None:
    path = FifoPath(base=0.0)
    kws: tuple[dict[str, float], ...] = (
        {"interval_s": 0.0},
        {"interval_s": 2.0},
        {"margin_s": 0.0},
        {"timeout_s": 0.0},
        {"baseline_window_s": 0.5},
    )
    for kw in kws:
        with pytest.raises(ValueError):
            QueueProbe(path.ping, **kw)  # type: ignore[arg-type]


async def test_the_baseline_pings_run_until_closed() -> None:
    path = FifoPath(base=0.001)
    probe = _probe(path, interval_s=0.01, baseline_interval_s=0.02)
    probe.start()
    await asyncio.sleep(0.15)
    await probe.close()
    n = probe.stats.pings
    assert n >= 3 and probe.baseline is not None
    await asyncio.sleep(0.06)
    assert probe.stats.pings == n


@pytest.mark.timeout(60)
async def test_ice_pings_cross_the_media_path_of_real_peers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch_loopback_ice(monkeypatch)
    tracks = noise_tracks()
    async with relayed_call(tracks.audio, tracks.video, drain_track, seed=11) as call:
        probe = QueueProbe(ice_ping(call.sender), timeout_s=0.4)
        rtts = [await probe.rtt() for _ in range(3)]
        assert all(r is not None and r < 0.1 for r in rtts), rtts
        # the request waits on the media's own direction: a delay there is in the round trip
        call.relay.impair(a_to_b=Impairment(delay_s=0.15))
        rtt = await probe.rtt()
        assert rtt is not None and 0.14 < rtt < 0.35, rtt
        queue = probe.queue_s(rtt)
        assert queue is not None and queue > 0.1
        call.relay.impair(a_to_b=Impairment(delay_s=0.6))
        assert await probe.rtt() is None  # past the timeout: no answer, no sample
        assert probe.stats.failed == 1


@pytest.mark.timeout(60)
async def test_a_drain_ends_once_the_bottleneck_queue_is_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 300 kbps link whose queue holds at most 0.3 s: the controller's drain (1 s) is
    longer than any queue there can be; the probe resumes the video well before it ends."""
    patch_loopback_ice(monkeypatch)
    t = noise_tracks()
    loops: list[QualityLoop] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        install_receive_buffers(receiver)
        loops.append(attach_quality(PeerSession(sender, t.clock, t.video, t.renderer)))

    async with relayed_call(t.audio, t.video, drain_track, seed=5, negotiated=negotiated) as call:
        try:
            loop = loops[0]
            assert loop.probe is not None
            await asyncio.sleep(2.5)
            assert loop.probe.baseline is not None  # the background pings measured the path
            call.relay.impair(a_to_b=Impairment(rate_bps=300_000, queue_limit_s=0.3))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if loop.drains:
                    break
            assert loop.drains, f"no drain; rung changes: {loop.changes}"
            _, seconds, early = loop.drains[0]
            assert early and seconds < 0.7, loop.drains
            assert loop.encoder is not None
            frames = loop.encoder.stats.frames
            await asyncio.sleep(0.3)  # video goes on before the 1 s pause would have ended
            assert loop.encoder.stats.frames > frames
        finally:
            for running in loops:
                await running.stop()


def test_the_probe_can_be_turned_off() -> None:
    assert AdaptationOptions(queue_probe=False).queue_probe is False
