"""QualityController: time is driven directly."""

import itertools

import pytest

from media.quality import DEFAULT_LADDER, QualityController, QualityOptions, Rung


def run_quiet(ctl: QualityController, t0: float, t1: float, step: float = 0.2) -> list[tuple]:
    """Updates without congestion from t0 to t1; returns (t, rung) of each change."""
    changes = []
    t = t0
    while t <= t1 + 1e-9:
        r = ctl.update(t, rtt_s=0.02, fraction_lost=0.0)
        if r is not None:
            changes.append((round(t, 3), r))
        t += step
    return changes


def test_starts_at_top_and_stays_when_clean() -> None:
    ctl = QualityController()
    assert ctl.rung == DEFAULT_LADDER[0]
    assert run_quiet(ctl, 0.0, 30.0) == []


def test_remb_jumps_straight_to_the_fitting_rung() -> None:
    ctl = QualityController(QualityOptions(down_hold_s=1.0))
    r = ctl.update(1.0, remb_bps=400_000, send_bps=520_000)
    # 0.85 * 400k = 340k: the 300k rung fits, three rungs down at once
    assert r == Rung(height=256, fps=15, bitrate=300_000)
    assert "remb" in ctl.reason
    assert ctl.update(1.5, remb_bps=100_000, send_bps=290_000) is None  # within the hold
    assert ctl.update(2.0, remb_bps=80_000, send_bps=290_000) == DEFAULT_LADDER[-1]
    assert ctl.update(3.5, remb_bps=50_000) is None  # already at the bottom


def test_remb_above_what_we_send_is_no_signal() -> None:
    """A static picture encodes small; aiortc's REMB then stays near 1.5x of it."""
    ctl = QualityController()
    assert ctl.update(1.0, remb_bps=450_000, send_bps=300_000) is None
    assert ctl.update(2.0, remb_bps=450_000, send_bps=300_000) is None
    # without send_bps the rung's bitrate is the reference (and the REMB must have fallen)
    assert ctl.update(3.0, remb_bps=1_700_000) is None  # it rose: no signal
    assert ctl.update(4.0, remb_bps=1_500_000) == DEFAULT_LADDER[1]  # 0.85 * 1.5M fits 1.2M


def test_remb_far_under_the_send_rate_aims_under_it_and_drains() -> None:
    ctl = QualityController(QualityOptions(severe_ratio=0.5, drain_s=0.6))
    # we send 1.9 Mbps, 400 kbps gets through: aim at 200 kbps, pause to drain the queue
    assert ctl.update(1.0, remb_bps=400_000, send_bps=1_900_000) == DEFAULT_LADDER[-1]
    assert ctl.drain_s == 0.6


def test_a_remb_that_did_not_fall_is_no_signal() -> None:
    """After a decrease aiortc's REMB climbs ~8 %/s: it lags behind a probe up."""
    ctl = QualityController(QualityOptions(up_hold_s=1.0))
    ctl.update(0.0, remb_bps=400_000, send_bps=520_000)
    assert ctl.index == 3
    assert ctl.update(1.2) == DEFAULT_LADDER[2]  # probe up to 600 kbps
    for k, remb in enumerate((420_000, 450_000, 490_000)):  # rising, though under 600k
        assert ctl.update(1.4 + 0.3 * k, remb_bps=remb, send_bps=520_000) is None
    assert ctl.update(2.5, remb_bps=300_000, send_bps=520_000) == DEFAULT_LADDER[3]


def test_loss_and_rtt_step_down_one_rung_per_hold() -> None:
    ctl = QualityController(QualityOptions(down_hold_s=1.0))
    assert ctl.update(0.0, rtt_s=0.02) is None  # baseline RTT
    assert ctl.update(1.0, fraction_lost=0.2) == DEFAULT_LADDER[1]
    assert ctl.update(1.5, fraction_lost=0.2) is None  # within the hold
    assert ctl.update(2.0, rtt_s=0.3) == DEFAULT_LADDER[2]
    assert "rtt" in ctl.reason and ctl.drain_s == pytest.approx(0.28)
    assert ctl.update(2.2, fraction_lost=0.01, rtt_s=0.03) is None  # small loss is tolerated


def test_severe_signals_jump_and_ask_for_a_drain() -> None:
    ctl = QualityController(QualityOptions(down_hold_s=1.0, severe_queue_s=0.4, max_drain_s=1.5))
    ctl.update(0.0, rtt_s=0.02)
    assert ctl.update(1.0, fraction_lost=0.3) == DEFAULT_LADDER[2]  # > 20 %: two rungs
    assert ctl.drain_s == 1.0  # and the full queue behind that loss drains
    assert ctl.update(2.0, rtt_s=1.0) == DEFAULT_LADDER[-1]  # ~1 s queue: bottom rung
    assert ctl.drain_s == pytest.approx(0.98)
    assert ctl.update(2.2) is None and ctl.drain_s == 0.0
    # a REMB far under the send rate drains for options.drain_s
    ctl2 = QualityController(QualityOptions(drain_s=0.6, max_drain_s=1.5))
    assert ctl2.update(1.0, remb_bps=600_000, send_bps=2_000_000) is not None
    assert ctl2.drain_s == 0.6


def test_remb_is_ignored_on_a_lossy_path_without_queueing() -> None:
    ctl = QualityController()
    ctl.update(0.0, rtt_s=0.1, fraction_lost=0.03)  # 3 % loss: repaired loss, no queue
    assert ctl.update(1.0, remb_bps=900_000, send_bps=2_000_000) is None
    assert ctl.update(2.0, rtt_s=0.5, remb_bps=900_000, send_bps=2_000_000) is not None


def test_queue_and_render_lag_are_congestion() -> None:
    ctl = QualityController()
    assert ctl.update(0.0, send_queue_s=0.3) == DEFAULT_LADDER[1]
    assert ctl.update(2.0, render_lag_s=0.5) == DEFAULT_LADDER[2]
    assert "render lag" in ctl.reason


def test_climbs_one_rung_per_hold_back_to_top() -> None:
    opts = QualityOptions(up_hold_s=1.5, probe_window_s=2.0)
    ctl = QualityController(opts)
    ctl.update(0.0, remb_bps=100_000, send_bps=2_000_000)
    assert ctl.index == len(DEFAULT_LADDER) - 1
    changes = run_quiet(ctl, 0.2, 20.0)
    assert [r for _, r in changes] == list(reversed(DEFAULT_LADDER[:-1]))
    times = [t for t, _ in changes]
    assert times[0] == pytest.approx(1.6, abs=0.21)  # the first step up waits the hold
    assert all(b - a >= 1.5 - 1e-6 for a, b in itertools.pairwise(times))
    assert times[-1] < 10.0


def test_failed_probe_backs_off_exponentially() -> None:
    opts = QualityOptions(up_hold_s=1.0, max_up_hold_s=4.0, probe_window_s=2.0)
    ctl = QualityController(opts)
    ctl.update(0.0, remb_bps=400_000, send_bps=520_000)  # -> index 3 (300k)
    assert ctl.index == 3
    t = 0.0
    holds = []
    for _ in range(4):
        # wait for the probe up to index 2
        while True:
            t = round(t + 0.1, 3)
            r = ctl.update(t, rtt_s=0.02)
            if r is not None:
                assert ctl.index == 2
                break
        # congestion right after the probe: straight back, hold doubles
        t = round(t + 0.3, 3)
        assert ctl.update(t, fraction_lost=0.3) == DEFAULT_LADDER[3]
        assert "probe failed" in ctl.reason
        holds.append(ctl.up_hold(2))
    assert holds == [2.0, 4.0, 4.0, 4.0]
    # a probe that survives its window resets the hold
    changes = run_quiet(ctl, t + 0.1, t + 4.0 + 2.5)
    assert changes and changes[0][1] == DEFAULT_LADDER[2]
    assert ctl.up_hold(2) == 1.0


def test_rtt_baseline_is_the_window_minimum_and_jitter_widens_it() -> None:
    ctl = QualityController(QualityOptions(rtt_rise_s=0.1, rtt_window_s=10.0))
    assert ctl.update(0.0, rtt_s=0.05) is None
    assert ctl.update(0.5, rtt_s=0.14) is None  # +90 ms: under the rise
    assert ctl.update(1.0, rtt_s=0.2, jitter_s=0.05) is None  # +150 ms but jitter 50 ms
    assert ctl.update(1.5, rtt_s=0.2) == DEFAULT_LADDER[1]
    # after the window the old minimum is forgotten: a stable higher RTT is the new normal
    ctl2 = QualityController(QualityOptions(rtt_rise_s=0.1, rtt_window_s=2.0))
    ctl2.update(0.0, rtt_s=0.01)
    assert ctl2.update(3.0, rtt_s=0.3) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ladder": ()}, "at least one rung"),
        ({"ladder": (DEFAULT_LADDER[1], DEFAULT_LADDER[0])}, "strictly down"),
        ({"start_index": 9}, "outside the ladder"),
        ({"remb_headroom": 0.0}, "remb_headroom"),
        ({"loss_threshold": 1.5}, "loss_threshold"),
        ({"up_hold_s": 20.0, "max_up_hold_s": 10.0}, "up_hold_s"),
    ],
)
def test_options_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        QualityOptions(**kwargs)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="height"):
        Rung(height=15, fps=10, bitrate=100_000)
    with pytest.raises(ValueError, match="fps"):
        Rung(height=100, fps=0, bitrate=100_000)
    with pytest.raises(ValueError, match="fraction_lost"):
        QualityController().update(0.0, fraction_lost=3.0)


def test_a_rung_left_under_congestion_waits_longer() -> None:
    ctl = QualityController(QualityOptions(up_hold_s=1.5, max_up_hold_s=4.0))
    assert ctl.update(0.0, fraction_lost=0.1) == DEFAULT_LADDER[1]
    assert ctl.up_hold(0) == 3.0
    changes = run_quiet(ctl, 0.2, 6.0)
    assert changes[0][1] == DEFAULT_LADDER[0]
    assert changes[0][0] == pytest.approx(3.0, abs=0.21)


def test_going_up_waits_for_a_clean_rtt_after_the_change_settled() -> None:
    ctl = QualityController(QualityOptions(up_hold_s=1.0, settle_s=1.0))
    ctl.update(0.0, rtt_s=0.02)
    assert ctl.update(0.1, fraction_lost=0.1) == DEFAULT_LADDER[1]
    for k in range(2, 26):  # no RTCP for 2.5 s: no evidence, no step up
        assert ctl.update(k / 10) is None
    assert ctl.update(2.6, rtt_s=0.02) == DEFAULT_LADDER[0]


def test_repaired_loss_also_silences_remb() -> None:
    ctl = QualityController()
    ctl.update(0.0, rtt_s=0.1, fraction_lost=0.0, repaired_loss=0.03)  # NACKs, RR says 0
    assert ctl.update(1.0, remb_bps=900_000, send_bps=2_000_000) is None
