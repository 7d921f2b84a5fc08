"""QualityController: time is driven directly."""

from collections.abc import Callable

import pytest

from media.congestion.controller import QualityController
from media.congestion.ladder import DEFAULT_LADDER, QualityOptions, Rung


def run_quiet(ctl: QualityController, t0: float, t1: float, step: float = 0.2) -> list[tuple]:
    """Ticks without congestion from t0 to t1; returns (t, rung) of each change."""
    changes = []
    t = t0
    while t <= t1 + 1e-9:
        ctl.on_rtt(0.02)
        ctl.on_loss(0.0)
        r = ctl.tick(t)
        if r is not None:
            changes.append((round(t, 3), r))
        t += step
    return changes


def remb(ctl: QualityController, now: float, bps: float, sent: float | None = None) -> Rung | None:
    """A REMB (and the rate sent lately, if known) weighed at ``now``."""
    ctl.on_remb(bps)
    if sent is not None:
        ctl.on_sent(sent)
    return ctl.tick(now)


def delivered(
    ctl: QualityController,
    now: float,
    bps: float,
    *,
    window_s: float = 1.0,
    sent: float | None = None,
    rtt: float | None = None,
) -> Rung | None:
    """A delivered rate over ``window_s`` (with the rate sent and an RTT, if known) weighed
    at ``now``."""
    ctl.on_delivered(bps, window_s)
    if sent is not None:
        ctl.on_sent(sent)
    if rtt is not None:
        ctl.on_rtt(rtt)
    return ctl.tick(now)


def report_rtt(
    ctl: QualityController, now: float, rtt_s: float, jitter_s: float = 0.0
) -> Rung | None:
    """An RTT (and the receiver's jitter) weighed at ``now``."""
    ctl.on_rtt(rtt_s, jitter_s)
    return ctl.tick(now)


def test_starts_at_top_and_stays_when_clean() -> None:
    ctl = QualityController()
    assert ctl.rung == DEFAULT_LADDER[0]
    assert run_quiet(ctl, 0.0, 30.0) == []


def test_remb_sets_the_target_and_the_fitting_rung() -> None:
    ctl = QualityController(QualityOptions(down_hold_s=1.0))
    r = remb(ctl, 1.0, 400_000, sent=520_000)
    # the 300k rung is the best under 400k, three rungs down at once; the encoder gets 400k
    assert r == Rung(height=256, fps=15, bitrate=300_000)
    assert "remb" in ctl.reason and ctl.target == 400_000 and ctl.bitrate == 400_000
    assert ctl.capacity == pytest.approx(400_000 / 0.85)
    assert remb(ctl, 1.5, 300_000, sent=390_000) is None  # within the hold
    assert ctl.target == 400_000
    assert remb(ctl, 2.1, 200_000, sent=250_000) == DEFAULT_LADDER[-1]
    assert ctl.bitrate == 200_000  # the bottom rung takes what the link has, up to 300k
    assert ctl.drain_s == 0.0  # not severe: 200k is over 0.7 x 250k


def test_remb_above_what_we_send_is_no_signal() -> None:
    """A static picture encodes small; aiortc's REMB then stays near 1.5x of it."""
    ctl = QualityController()
    assert remb(ctl, 1.0, 450_000, sent=300_000) is None
    assert remb(ctl, 2.0, 450_000, sent=300_000) is None
    # without a send rate the encoder's bitrate is the reference (and the REMB must have fallen)
    assert remb(ctl, 3.0, 1_700_000) is None  # it rose: no signal
    assert remb(ctl, 4.0, 1_500_000) == DEFAULT_LADDER[1]
    assert ctl.target == 1_500_000


def test_a_held_low_remb_in_overuse_is_a_mild_cut() -> None:
    """A probe crept over the link: the receiver's estimator is in overuse and sends a REMB
    with nearly every packet, each 0.85x what arrives, steady (no fall). Sent often and under
    0.85x what we send, it cuts the target to it; sent about once a second (its increase
    state, lagging a probe), it is no signal."""
    ctl = QualityController(QualityOptions(start_index=3))  # 256 px, 300 kbps
    remb(ctl, 0.0, 330_000, sent=280_000)  # the first REMB (not under sent)
    for k in range(1, 3):  # sparse and steady: no signal, the target grows
        remb(ctl, k * 0.6, 330_000, sent=500_000)
        assert "held" not in ctl.reason
    grown = ctl.target
    assert ctl.rung.height == 256 and grown > 330_000
    t, cut = 1.2, None
    for _ in range(6):  # now one every 30 ms, steady at 0.85x the 388k that arrives
        t += 0.03
        remb(ctl, t, 330_000, sent=500_000)
        if "held" in ctl.reason and cut is None:
            cut = t
    assert cut is not None and cut <= 1.2 + 3 * 0.03 + 1e-9  # 4 within 0.5 s (one sparse)
    assert ctl.target == 330_000 < grown
    assert ctl.rung.height == 256  # a mild cut keeps the rung, no drain
    assert ctl.drain_s == 0.0
    assert ctl.capacity == pytest.approx(330_000 / 0.85)
    # often but not under what we send (what arrives is what we send): no cut
    ctl2 = QualityController(QualityOptions(start_index=3))
    for k in range(8):
        remb(ctl2, k * 0.03, 330_000, sent=360_000)
        assert "held" not in ctl2.reason


def test_remb_far_under_the_send_rate_goes_to_the_bottom_and_drains() -> None:
    ctl = QualityController(QualityOptions(severe_ratio=0.5, drain_s=0.6))
    # we send 1.9 Mbps, 400 kbps gets through: bottom rung, pause to drain the queue
    assert remb(ctl, 1.0, 400_000, sent=1_900_000) == DEFAULT_LADDER[-1]
    assert ctl.drain_s == 0.6
    assert remb(ctl, 1.2, 300_000, sent=100_000) is None  # severe, no effect


def test_a_stream_of_small_remb_steps_is_a_fall() -> None:
    """aiortc sends a REMB with nearly every packet during overuse, each 0.85x of a one-second
    window: the steps are 1-3 %, the fall over them is what counts."""
    ctl = QualityController()
    assert remb(ctl, 0.0, 2_400_000, sent=2_000_000) is None  # no signal
    r = remb(ctl, 0.25, 1_500_000, sent=2_000_000)  # the onset: a cut
    assert r == DEFAULT_LADDER[1] and ctl.drain_s == 0
    changes = []
    bps, t = 1_500_000.0, 0.25
    while bps > 1_000_000:  # 2 % per REMB, 26 ms apart (measured through a 400 kbps cap)
        t, bps = t + 0.026, bps * 0.98
        if remb(ctl, t, bps, sent=1_950_000) is not None:
            changes.append((t, ctl.rung, ctl.drain_s))
    # under 0.7x of what was sent over REMB's own window: severe within the down hold,
    # however small each step (the cut to 1.5M a moment ago does not hide it)
    assert len(changes) == 1
    when, rung, drain = changes[0]
    assert rung == DEFAULT_LADDER[-1] and drain > 0 and when < 0.6
    # a REMB that did not fall against the last 1.5 s is no signal
    quiet = QualityController(QualityOptions(remb_window_s=1.5))
    remb(quiet, 0.0, 1_900_000, sent=1_900_000)
    assert remb(quiet, 0.5, 1_880_000, sent=1_900_000) is None
    assert quiet.reason == "start"


def test_a_keyframe_over_the_bitrate_does_not_make_a_dip_severe() -> None:
    """The bytes of the last second include a keyframe well over the bitrate; the link was
    only ever asked for the bitrate, so a REMB at 0.75x of it is a cut, not a drain."""
    ctl = QualityController(QualityOptions(start_index=3))  # 256 px, 300 kbps
    assert remb(ctl, 0.0, 420_000, sent=300_000) is None
    assert remb(ctl, 0.5, 225_000, sent=520_000) == DEFAULT_LADDER[4]
    assert ctl.drain_s == 0 and ctl.target == 225_000


def test_a_mild_cut_keeps_the_rung_and_lowers_the_encoders_rate() -> None:
    """Hysteresis: a REMB a little under the rung's bitrate is a rate within the rung (no
    keyframe, no new size) down to rung_keep of it; under that, or severe, a rung down."""
    ctl = QualityController(QualityOptions(start_index=3))  # 256 px, 300 kbps
    assert remb(ctl, 0.0, 420_000, sent=300_000) is None
    assert remb(ctl, 0.5, 250_000, sent=300_000) is None
    assert ctl.index == 3 and ctl.bitrate == 250_000 and "remb" in ctl.reason
    assert remb(ctl, 2.0, 205_000, sent=255_000) == DEFAULT_LADDER[4]
    assert ctl.drain_s == 0  # a cut under rung_keep, not a severe one
    strict = QualityController(QualityOptions(start_index=3, rung_keep=1.0))
    remb(strict, 0.0, 420_000, sent=300_000)
    assert remb(strict, 0.5, 250_000, sent=300_000) == DEFAULT_LADDER[4]
    # an encoder sending 1.3x its rate does not get to keep the rung
    over = QualityController(QualityOptions(start_index=3))
    remb(over, 0.0, 420_000, sent=300_000)
    assert remb(over, 0.5, 250_000, sent=390_000) == DEFAULT_LADDER[4]
    with pytest.raises(ValueError, match="rung_keep"):
        QualityOptions(rung_keep=0)


def test_all_we_sent_arriving_above_the_capacity_proves_a_better_link() -> None:
    """An encoder short of its target never sends near_capacity (1.12x) the capacity; all of
    what it sent arriving, carried_margin (1.08x) over it or more, is proof enough."""
    ctl = QualityController()
    ctl.on_rtt(0.02)
    ctl.tick(0.0)
    remb(ctl, 0.1, 340_000, sent=2_000_000)  # severe: capacity 400k, bottom
    for k in range(1, 40):  # the queue (RTT 0.8 s) drains at 380k; then quiet, at what is sent
        rate = 380_000 if k < 15 else 0.98 * min(ctl.bitrate, 380_000)
        delivered(ctl, k * 0.2, rate, sent=rate, rtt=0.8 if k == 1 else 0.02)
    cap = ctl.capacity
    assert cap == 380_000
    # 1.05x is within the measurement's noise: no proof
    delivered(ctl, 8.0, 1.05 * cap, sent=1.05 * cap, rtt=0.02)
    assert ctl.capacity == cap
    # the encoder sends 1.1x the capacity (under the 1.12x margin) and all of it arrives
    delivered(ctl, 8.2, 1.1 * cap, sent=1.1 * cap, rtt=0.02)
    assert ctl.capacity == 1.1 * cap
    # a shortfall (a queue) is no proof, however close
    before = ctl.capacity
    delivered(ctl, 9.2, 1.1 * before, sent=1.3 * before, rtt=0.02)
    assert ctl.capacity == before


def test_loss_and_rtt_cut_the_target() -> None:
    ctl = QualityController(QualityOptions(down_hold_s=1.0, rung_keep=1.0))
    ctl.on_rtt(0.02)
    assert ctl.tick(0.0) is None  # baseline RTT
    ctl.on_loss(0.1)
    ctl.on_sent(2_000_000)
    assert ctl.tick(1.0) == DEFAULT_LADDER[1]
    assert ctl.target == pytest.approx(1_900_000)  # x (1 - loss / 2)
    assert ctl.capacity == pytest.approx(1_800_000)
    ctl.on_loss(0.1)
    assert ctl.tick(1.5) is None  # within the hold
    ctl.on_rtt(0.3)
    assert ctl.tick(2.0) is None  # x 0.85 = 1.615M: still the 1.2M rung
    assert ctl.target == pytest.approx(1_615_000) and ctl.bitrate == 1_615_000
    assert "rtt" in ctl.reason
    ctl.on_loss(0.01)
    ctl.on_rtt(0.03)
    assert ctl.tick(2.2) is None  # small loss is tolerated


def test_severe_signals_go_to_the_bottom_and_ask_for_a_drain() -> None:
    ctl = QualityController(QualityOptions(severe_queue_s=0.4, max_drain_s=1.5))
    ctl.on_rtt(0.02)
    ctl.tick(0.0)
    ctl.on_loss(0.3)
    assert ctl.tick(1.0) == DEFAULT_LADDER[-1]
    assert ctl.drain_s == 1.0  # the full queue behind that loss drains
    ctl2 = QualityController(QualityOptions(severe_queue_s=0.4, max_drain_s=1.5))
    ctl2.on_rtt(0.02)
    ctl2.tick(0.0)
    ctl2.on_rtt(1.0)
    assert ctl2.tick(2.0) == DEFAULT_LADDER[-1]  # ~1 s queue
    assert ctl2.drain_s == pytest.approx(0.98)
    assert ctl2.tick(2.2) is None and ctl2.drain_s == 0.0


def test_remb_is_ignored_on_a_lossy_path_without_queueing() -> None:
    ctl = QualityController()
    ctl.on_rtt(0.1)
    ctl.on_loss(0.03)  # 3 % loss: repaired loss, no queue
    ctl.tick(0.0)
    assert remb(ctl, 1.0, 900_000, sent=2_000_000) is None
    ctl.on_rtt(0.5)
    assert remb(ctl, 2.0, 800_000, sent=2_000_000) is not None


def test_the_measurements_of_a_tick_are_weighed_together_in_any_order() -> None:
    """A tick weighs what was noted since the last one as of its ``now``; the order the
    measurements came in changes nothing (here the RTT rise that lets a REMB count on a
    lossy path, and the send rate the REMB is compared with)."""
    seen = []
    for order in (0, 1):
        ctl = QualityController()
        ctl.on_loss(0.03)
        ctl.on_rtt(0.1)
        ctl.tick(0.0)
        notes: list[tuple[Callable[[float], None], float]] = [
            (ctl.on_remb, 800_000),
            (ctl.on_rtt, 0.5),
            (ctl.on_sent, 2_000_000),
        ]
        for note, value in notes if order == 0 else reversed(notes):
            note(value)
        seen.append((ctl.tick(2.0), ctl.target, ctl.reason, ctl.drain_s))
    assert seen[0] == seen[1] and seen[0][0] == DEFAULT_LADDER[-1]
    assert "rtt" in seen[0][2] and "remb" in seen[0][2]


def test_queue_and_render_lag_step_one_rung_down() -> None:
    ctl = QualityController()
    ctl.on_send_queue(0.3)
    assert ctl.tick(0.0) == DEFAULT_LADDER[1]
    ctl.on_render_lag(0.5)
    assert ctl.tick(2.0) == DEFAULT_LADDER[2]
    assert "render lag" in ctl.reason


def test_the_capacity_is_measured_while_the_queue_drains() -> None:
    ctl = QualityController()
    ctl.on_rtt(0.02)
    ctl.tick(4.0)
    remb(ctl, 5.0, 1_200_000, sent=2_000_000)  # the onset, 0.6 s late
    assert ctl.index == len(DEFAULT_LADDER) - 1
    # a report whose window began a second before mixes in the old rate: not the link's
    delivered(ctl, 5.4, 900_000, window_s=1.0, rtt=0.9)  # a deep queue
    assert ctl.capacity == pytest.approx(1_200_000 / 0.85)
    delivered(ctl, 6.2, 380_000, window_s=0.8)  # the queue draining
    assert ctl.capacity == 380_000 and ctl.target <= 0.85 * 380_000
    delivered(ctl, 7.4, 160_000, window_s=1.2)  # idle: the best counts
    assert ctl.capacity == 380_000


def test_a_remb_a_second_into_the_drain_measures_the_link_too() -> None:
    """Receiver reports span ~1 s: one that covers the end of the drain and some idle time
    under-measures the link. The REMB a second after the severe signal averages the
    draining queue only."""
    ctl = QualityController()
    ctl.on_rtt(0.02)
    ctl.tick(4.0)
    remb(ctl, 5.0, 1_200_000, sent=2_000_000)
    ctl.on_rtt(0.9)
    remb(ctl, 5.5, 600_000)  # too early: its second began before
    delivered(ctl, 6.3, 234_000, window_s=1.0)  # part of it idle
    assert ctl.capacity == 234_000
    remb(ctl, 6.4, 300_000)
    assert ctl.capacity == pytest.approx(300_000 / 0.85)
    assert ctl.target <= 300_000


def test_a_remb_dip_without_a_queue_leaves_the_capacity_to_remb() -> None:
    """A delay step (a route change, 50 ms more) dips REMB like an onset does; no RTT rise
    follows, and what arrives while video pauses is no measure of the link."""
    ctl = QualityController()
    ctl.on_rtt(0.02)
    ctl.tick(4.0)
    remb(ctl, 5.0, 1_300_000, sent=2_000_000)  # looks severe: bottom, drain
    assert ctl.index == len(DEFAULT_LADDER) - 1 and ctl.drain_s > 0
    delivered(ctl, 5.6, 160_000, window_s=0.6, rtt=0.12)  # +100 ms
    assert ctl.capacity == pytest.approx(1_300_000 / 0.85)
    growth, _ = grow_for(ctl, 8.0, 2.0)  # far under it: the fast ramp
    assert growth > 1.6


def grow_for(ctl: QualityController, t: float, seconds: float) -> tuple[float, float]:
    """Quiet ticks every 0.2 s for ``seconds``; returns (growth factor, new time)."""
    before = ctl.target
    for _ in range(round(seconds / 0.2)):
        t = round(t + 0.2, 3)
        ctl.tick(t)
    return ctl.target / before, t


def test_near_the_capacity_it_probes_gently_far_under_it_fast() -> None:
    ctl = QualityController(QualityOptions(probe_gain=0.1, ramp_gain=0.4, up_hold_s=1.0))
    remb(ctl, 0.0, 340_000, sent=1_000_000)  # capacity 400k, severe
    delivered(ctl, 0.2, 400_000, window_s=0.5)
    assert ctl.target == 150_000
    held, t = grow_for(ctl, 0.2, 0.6)
    assert held == 1.0  # the quiet hold after congestion
    _, t = grow_for(ctl, t, 0.4)
    far, t = grow_for(ctl, t, 1.0)
    assert far == pytest.approx(1.4, rel=0.01)  # far under 400k / near_capacity: 40 %/s
    while ctl.target < 400_000 / ctl.options.near_capacity:
        t = round(t + 0.2, 3)
        ctl.tick(t)
    near, t = grow_for(ctl, t, 1.0)
    assert near == pytest.approx(1.1, rel=0.01)  # near the capacity: 10 %/s


def test_a_link_that_carries_more_raises_the_capacity_and_the_gain() -> None:
    # the defaults: 20 %/s, 40 %/s far under the capacity, up to 80 %/s after proofs
    ctl = QualityController(QualityOptions(up_hold_s=1.0))
    remb(ctl, 0.0, 340_000, sent=1_000_000)
    delivered(ctl, 0.2, 400_000, window_s=0.5)
    t = 4.0  # past the measuring window of the severe signal
    while ctl.target < 400_000:
        t = round(t + 0.2, 3)
        ctl.tick(t)
    gains = []
    for _ in range(4):  # each time the receiver got 20 % more than the capacity
        more = ctl.capacity * 1.2 if ctl.capacity else 0.0
        t = round(t + 0.2, 3)
        delivered(ctl, t, more, window_s=1.0)
        assert ctl.capacity == more
        g, t = grow_for(ctl, t, 0.2)  # one step: under the probe's ceiling
        gains.append(round(g**5 - 1, 2))
    # the probe speeds up: 20 % x 2, x 4, then no more than max_probe_gain (past ramp_gain,
    # as each step was proven by what arrived)
    assert gains == [0.4, 0.8, 0.8, 0.8]


@pytest.mark.parametrize(("fill", "over"), [(1.0, 1.15), (0.85, 1.15 / 0.85), (0.5, 1.15 / 0.8)])
def test_the_probes_margin_is_for_what_the_encoder_sends(fill: float, over: float) -> None:
    """An encoder that sends only part of its bitrate (dropped frames, plain content) would
    never carry the probe's margin over the capacity: its target goes up to make up for
    it, by 1 / min_fill (1.25x) at most."""
    ctl = QualityController()
    remb(ctl, 0.0, 340_000, sent=1_000_000)
    delivered(ctl, 0.2, 400_000, window_s=0.5)
    t = 4.0
    for _ in range(200):
        t = round(t + 0.2, 3)
        ctl.on_sent(fill * ctl.bitrate)
        ctl.tick(t)
    assert ctl.capacity == 400_000
    assert ctl.target == pytest.approx(400_000 * over, rel=1e-6)


def test_back_to_the_top_rung_after_a_cap_lifts() -> None:
    ctl = QualityController()
    remb(ctl, 0.0, 340_000, sent=2_000_000)
    delivered(ctl, 0.5, 400_000, window_s=0.5)
    t = 0.5
    while t < 5.0:  # the capped link: probe gently around 400k
        t = round(t + 0.2, 3)
        if int(t * 5) % 5 == 0:  # a receiver report every second
            ctl.on_rtt(0.02)
        ctl.tick(t)
    assert ctl.index == 3 and ctl.capacity == 400_000
    lifted = t
    while ctl.index > 0 and t < lifted + 20:  # the cap is gone: delivered follows target
        t = round(t + 0.2, 3)
        if int(t * 5) % 5 == 0:
            ctl.on_rtt(0.02)
            ctl.on_delivered(ctl.bitrate, 1.0)
        ctl.tick(t)
    assert ctl.index == 0 and t - lifted < 10.0


def test_failed_probe_backs_off_exponentially() -> None:
    opts = QualityOptions(up_hold_s=1.0, max_up_hold_s=4.0, probe_window_s=2.0)
    ctl = QualityController(opts)
    remb(ctl, 0.0, 500_000, sent=600_000)  # -> index 3, target 500k
    assert ctl.index == 3
    t = 0.0
    holds = []
    for _ in range(3):
        while ctl.index != 2:  # wait for the step up to index 2 (target past 600k)
            t = round(t + 0.2, 3)
            ctl.tick(t)
        t = round(t + 0.4, 3)
        ctl.on_send_queue(0.3)
        assert ctl.tick(t) == DEFAULT_LADDER[3]
        assert "probe failed" in ctl.reason
        holds.append(ctl.up_hold(2))
    assert holds == [2.0, 4.0, 4.0]


def test_rtt_baseline_is_the_window_minimum_and_jitter_widens_it() -> None:
    ctl = QualityController(QualityOptions(rtt_rise_s=0.1, rtt_window_s=10.0, rung_keep=1.0))
    assert report_rtt(ctl, 0.0, 0.05) is None
    assert report_rtt(ctl, 0.5, 0.14) is None  # +90 ms: under the rise
    assert report_rtt(ctl, 1.0, 0.2, jitter_s=0.05) is None  # +150 ms but jitter 50 ms
    assert report_rtt(ctl, 1.5, 0.2) == DEFAULT_LADDER[1]
    # after the window the old minimum is forgotten: a stable higher RTT is the new normal
    ctl2 = QualityController(QualityOptions(rtt_rise_s=0.1, rtt_window_s=2.0))
    report_rtt(ctl2, 0.0, 0.01)
    assert report_rtt(ctl2, 3.0, 0.3) is None


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="fraction_lost"):
        QualityController().on_loss(3.0)


def test_repaired_loss_also_silences_remb() -> None:
    ctl = QualityController()
    ctl.on_rtt(0.1)
    ctl.on_loss(0.0)
    ctl.on_repaired(0.03)  # NACKs, while the receiver report says 0
    ctl.tick(0.0)
    assert remb(ctl, 1.0, 900_000, sent=2_000_000) is None
