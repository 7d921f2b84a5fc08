"""The receiver's early congestion signal: a filling queue is seen, a delay step and jitter
are not; the REMB it sends and how aiortc's own are held under it."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc import RTCPeerConnection

from media.congestion.fast_remb import (
    FastRemoteBitrateEstimator,
    QueueGrowthDetector,
    QueueGrowthOptions,
    QueueRiseDetector,
    QueueRiseOptions,
    install_fast_remb,
)
from media.congestion.jitter import install_receive_buffers
from media.congestion.loop import PeerSession, QualityLoop, attach_quality
from tests.harness.netem import Impairment, relayed_call
from tests.rtc_helpers import drain_track, noise_tracks, patch_loopback_ice

PKT = 1200


def _frames(start_ms: float, end_ms: float, bps: float, *, pace_bps: float | None = None):
    """(send ms, size) of a 25 fps sender at ``bps``: each frame's packets back to back at
    ``pace_bps`` (None: all at once, as aiortc sends them)."""
    out: list[tuple[float, int]] = []
    t = start_ms
    per_frame = round(bps / 8 / 25)
    while t < end_ms:
        sizes = [PKT] * (per_frame // PKT) + ([per_frame % PKT] if per_frame % PKT else [])
        for k, size in enumerate(sizes):
            gap = 0.0 if pace_bps is None else PKT * 8 * 1000 / pace_bps
            out.append((t + k * gap, size))
        t += 40.0
    return out


def _link(sends, rate_of, *, delay_of=lambda t: 5.0):
    """Arrival ms of each packet through a FIFO link whose rate (bps, None = unlimited) and
    one-way delay may change with the send time."""
    busy_until, out = 0.0, []
    for t, size in sends:
        rate = rate_of(t)
        begin = max(t, busy_until) if rate is not None else t
        done = begin + (size * 8 * 1000 / rate if rate is not None else 0.0)
        busy_until = done if rate is not None else busy_until
        out.append((t, size, done + delay_of(t)))
    return out


def _first_signal(
    detector: QueueRiseDetector | QueueGrowthDetector, packets
) -> tuple[float, int] | None:
    for send, size, arrival in packets:
        remb = detector.observe(arrival_ms=arrival, send_ms=send, size=size)
        if remb is not None:
            return arrival, remb
    return None


@pytest.mark.parametrize("pace_bps", [5_000_000, None])  # our pacer; aiortc's bursts
def test_a_sudden_bottleneck_is_seen_within_150_ms_at_its_rate(pace_bps: float | None) -> None:
    sends = _frames(0, 3000, 2_000_000, pace_bps=pace_bps)
    packets = _link(sends, lambda t: None if t < 1000 else 400_000)
    hit = _first_signal(QueueRiseDetector(), packets)
    assert hit is not None
    at, remb = hit
    assert at - 1000 < 150, f"seen {at - 1000:.0f} ms after the onset"
    assert 0.85 * 400_000 * 0.9 < remb < 0.85 * 400_000 * 1.1  # what the link carried, x0.85


def test_no_signal_without_a_bottleneck_or_from_a_delay_step() -> None:
    sends = _frames(0, 5000, 2_000_000, pace_bps=5_000_000)
    assert _first_signal(QueueRiseDetector(), _link(sends, lambda t: None)) is None
    # a route change: +50 ms one-way from 2 s on (the loss scenario's delay), then +150 ms
    step = _link(sends, lambda t: None, delay_of=lambda t: 5 + 50 * (t >= 2000) + 100 * (t >= 3500))
    assert _first_signal(QueueRiseDetector(), step) is None


@pytest.mark.parametrize("seed", range(5))
def test_jitter_within_40_ms_is_no_queue(seed: int) -> None:
    rng = random.Random(seed)
    sends = _frames(0, 10_000, 2_000_000, pace_bps=5_000_000)
    jittered = _link(sends, lambda t: None, delay_of=lambda t: 25 + rng.uniform(-20, 20))
    assert _first_signal(QueueRiseDetector(), jittered) is None


def test_paced_keyframes_into_a_link_that_carries_the_rate_are_no_queue() -> None:
    # paced at 2.5x, a 60 KB keyframe into a 2.2 Mbps link queues 120 ms, but the queue
    # grows 1.3 ms per ms sent (< min_slope): a link short of the bitrate grows it faster
    frames = _frames(0, 6000, 2_000_000, pace_bps=None)
    frames += [(t + 20.0, PKT) for t in range(1000, 6000, 1000) for _ in range(50)]
    sends, leaves = [], 0.0  # the pacer: one packet after another at 5 Mbps at most
    for t, size in sorted(frames):
        leaves = max(t, leaves + size * 8 * 1000 / 5_000_000)
        sends.append((leaves, size))
    assert _first_signal(QueueRiseDetector(), _link(sends, lambda t: 2_200_000)) is None
    assert _first_signal(QueueRiseDetector(), _link(sends, lambda t: 1_500_000)) is not None


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="min_packets"):
        QueueRiseOptions(min_packets=1)
    with pytest.raises(ValueError, match="positive"):
        QueueRiseOptions(min_rise_ms=0)
    with pytest.raises(ValueError, match="backoff"):
        QueueRiseOptions(backoff=1.5)
    with pytest.raises(ValueError, match="drop_ratio"):
        FastRemoteBitrateEstimator(drop_ratio=1.0)
    with pytest.raises(ValueError, match="bins"):
        QueueGrowthOptions(bins=1)
    with pytest.raises(ValueError, match="max_arrival_share"):
        QueueGrowthOptions(max_arrival_share=1.0)
    with pytest.raises(ValueError, match="growth_ratio"):
        FastRemoteBitrateEstimator(growth_ratio=1.0)


def _abs_send_time(send_ms: float, origin: int = 0) -> int:
    return (origin + round(send_ms * (1 << 18) / 1000)) % (1 << 24)


def _feed(est: FastRemoteBitrateEstimator, packets, *, origin: int = 0, ssrc: int = 1234):
    out = []
    for send, size, arrival in packets:
        remb = est.add(round(arrival), _abs_send_time(send, origin), size, ssrc)
        if remb is not None:
            out.append((arrival, remb[0], remb[1]))
    return out


@pytest.mark.parametrize("origin", [0, (1 << 24) - (1 << 18) * 2])  # abs-send-time wraps at 2 s
def test_the_estimator_sends_the_early_remb_once_and_holds_aiortcs_under_it(origin: int) -> None:
    seen: list[tuple[int, int, bool]] = []
    est = FastRemoteBitrateEstimator(on_remb=lambda ms, bps, fast: seen.append((ms, bps, fast)))
    sends = _frames(0, 4000, 2_000_000, pace_bps=5_000_000)
    rembs = _feed(est, _link(sends, lambda t: None if t < 2500 else 400_000), origin=origin)
    assert est.fast_signals == 1
    fast = [(ms, bps) for ms, bps, is_fast in seen if is_fast]
    assert len(fast) == 1 and fast[0][0] - 2500 < 150
    assert all(ssrcs == [1234] for *_, ssrcs in rembs)
    assert len(seen) == len(rembs)
    held = [bps for ms, bps, is_fast in seen if not is_fast and fast[0][0] < ms < fast[0][0] + 1000]
    assert held and max(held) <= fast[0][1]
    assert est.rate_control.current_bitrate <= 400_000  # aiortc's estimator goes on from there


def test_a_burst_into_a_fast_link_sends_nothing_early() -> None:
    # aiortc's bursts of a 2 Mbps call with 60 KB keyframes every second into a 3 Mbps link:
    # the queue each keyframe builds measures 3 Mbps, over what arrives: no early REMB
    sends = _frames(0, 6000, 2_000_000, pace_bps=None)
    sends += [(t + 0.1, PKT) for t in range(1000, 6000, 1000) for _ in range(50)]
    sends.sort()
    est = FastRemoteBitrateEstimator()
    _feed(est, _link(sends, lambda t: 3_000_000))
    assert est.fast_signals == 0


def test_detect_off_is_aiortcs_estimator_alone() -> None:
    sends = _frames(0, 4000, 2_000_000, pace_bps=5_000_000)
    packets = _link(sends, lambda t: None if t < 2500 else 400_000)
    plain, observed = FastRemoteBitrateEstimator(detect=False), []
    from aiortc.rate import RemoteBitrateEstimator

    stock = RemoteBitrateEstimator()
    for send, size, arrival in packets:
        a = plain.add(round(arrival), _abs_send_time(send), size, 1)
        b = stock.add(round(arrival), _abs_send_time(send), size, 1)
        observed.append((a, b))
    assert all(a == b for a, b in observed) and plain.fast_signals == 0


def test_install_checks_the_receiver() -> None:
    class Receiver:
        track = None

    with pytest.raises(ValueError, match="video receiver"):
        install_fast_remb(Receiver())  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_the_bots_early_remb_reaches_the_quality_loop_on_real_peers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch_loopback_ice(monkeypatch)
    t = noise_tracks()
    clock = t.clock
    rembs: list[tuple[float, int, bool]] = []
    loops: list[QualityLoop] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        install_receive_buffers(
            receiver, on_remb=lambda _, bps, f: rembs.append((clock.now(), bps, f))
        )
        loops.append(attach_quality(PeerSession(sender, clock, t.video, t.renderer)))

    async with relayed_call(t.audio, t.video, drain_track, seed=5, negotiated=negotiated) as call:
        try:
            await asyncio.sleep(2.5)
            onset = clock.now()
            call.relay.impair(a_to_b=Impairment(rate_bps=300_000, queue_limit_s=1.0))
            for _ in range(60):
                await asyncio.sleep(0.05)
                if loops[0].controller.index > 0:
                    break
            fast = [(t - onset, bps) for t, bps, f in rembs if f and t >= onset]
            assert fast, (
                f"no early REMB; REMBs after the onset: {[r for r in rembs if r[0] >= onset]}"
            )
            assert fast[0][0] < 1.5 and fast[0][1] < 2 * 300_000
            assert loops[0].controller.index > 0, "the sender did not step down"
        finally:
            for running in loops:
                await running.stop()


def _paced(frames: list[tuple[float, int]], pace_bps: float) -> list[tuple[float, int]]:
    """The sender's pacer: one packet after another, at ``pace_bps`` at most."""
    sends, leaves = [], 0.0
    for t, size in sorted(frames):
        leaves = max(t, leaves + size * 8 * 1000 / pace_bps)
        sends.append((leaves, size))
    return sends


@pytest.mark.parametrize("over", [1.1, 1.2, 1.5])  # 5 % is left to the RTT rules
def test_a_probe_a_little_over_the_link_is_seen_within_a_second(over: float) -> None:
    sends = _paced(_frames(0, 6000, 400_000 * over, pace_bps=None), 2.5 * 400_000 * over)
    packets = _link(sends, lambda t: None if t < 2000 else 400_000)
    # the sudden-queue rule does not see a 10-50 % overshoot
    assert _first_signal(QueueRiseDetector(), packets) is None
    hit = _first_signal(QueueGrowthDetector(), packets)
    assert hit is not None
    at, remb = hit
    assert at - 2000 < 1000 / (over - 1) * 0.1 + 500, f"seen {at - 2000:.0f} ms after"
    assert 0.85 * 400_000 * 0.9 < remb < 0.85 * 400_000 * 1.1


def _stalled(packets, start: float, ms: float):
    """The receiving loop stalls: packets that arrive meanwhile are read at its end."""
    return [(s, z, start + ms if start <= a < start + ms else a) for s, z, a in packets]


@pytest.mark.parametrize("seed", range(3))
def test_no_growth_from_delay_steps_jitter_loss_or_a_stalled_loop(seed: int) -> None:
    rng = random.Random(seed)
    sends = _paced(_frames(0, 10_000, 2_000_000, pace_bps=None), 5_000_000)
    steps = _link(
        sends, lambda t: None, delay_of=lambda t: 5 + 50 * (t >= 2000) + 100 * (t >= 5000)
    )
    jitter = _link(sends, lambda t: None, delay_of=lambda t: 25 + rng.uniform(-20, 20))
    lossy = [p for p in steps if rng.random() > 0.02]
    stalls = _link(sends, lambda t: None)
    for at in range(1000, 10_000, 700):
        stalls = _stalled(stalls, at, rng.uniform(50, 250))
    for packets in (steps, jitter, lossy, stalls):
        assert _first_signal(QueueGrowthDetector(), packets) is None


def test_the_estimator_sends_a_growing_queues_remb_under_aiortcs() -> None:
    seen: list[tuple[int, int, bool]] = []
    est = FastRemoteBitrateEstimator(on_remb=lambda ms, bps, fast: seen.append((ms, bps, fast)))
    sends = _paced(_frames(0, 9000, 480_000, pace_bps=None), 1_200_000)
    _feed(est, _link(sends, lambda t: None if t < 6000 else 400_000))
    assert est.fast_signals == 0 and est.growth_signals >= 1
    ours = [(ms, bps) for ms, bps, fast in seen if fast]
    before = [bps for ms, bps, fast in seen if not fast and ms < ours[0][0]]
    assert before and ours[0][1] < 0.95 * before[-1]
    assert 6000 < ours[0][0] < 7000 and abs(ours[0][1] - 340_000) < 34_000


def test_retransmissions_with_their_first_send_time_are_left_out() -> None:
    # aiortc's retransmission keeps the packet's abs-send-time: one in 20 arrives again
    # 700 ms later, out of order; the early signals still see the onset, and only it
    sends = _frames(0, 4000, 2_000_000, pace_bps=None)
    packets = _link(sends, lambda t: None if t < 2500 else 400_000)
    again = [(s, z, a + 700) for s, z, a in packets[::20]]
    mixed = sorted(packets + again, key=lambda p: p[2])
    est = FastRemoteBitrateEstimator()
    _feed(est, mixed)
    assert est.fast_signals == 1
    detector = QueueGrowthDetector()  # fed out of order directly: no error
    for send, size, arrival in mixed:
        detector.observe(arrival_ms=arrival, send_ms=send, size=size)
