"""The quality loop's own meters: time is driven directly."""

import pytest

from media.congestion.meters import ByteRate, RenderLag, RepairedShare


def test_byte_rate_waits_for_its_span_then_counts_the_window() -> None:
    rate = ByteRate(window_s=1.0, min_span_s=0.2)
    assert rate.bps(0.0, 0) is None
    assert rate.bps(0.1, 1_000) is None  # 0.1 s is under the span
    assert rate.bps(0.5, 5_000) == pytest.approx(80_000)
    assert rate.bps(1.0, 10_000) == pytest.approx(80_000)
    assert rate.bps(1.6, 10_000) == 0.0  # the window (0.6..1.6 s) holds no bytes sent
    assert rate.bps(3.0, 20_000) is None  # only itself left in the window


def test_render_lag_is_zero_until_the_window_is_mostly_full() -> None:
    lag = RenderLag(window_s=1.0, min_span_s=0.2)
    assert lag.lag(0.0, 0, fps=25) == 0.0
    assert lag.lag(0.5, 5, fps=25) == 0.0
    # 10 ticks of 25 fps dropped over 1 s: 0.4 s behind per second
    assert lag.lag(1.0, 10, fps=25) == pytest.approx(0.4)
    assert lag.lag(2.0, 10, fps=25) == 0.0  # nothing dropped since


def test_repaired_share_counts_nacks_against_the_packets_sent() -> None:
    share = RepairedShare(window_s=2.0, packet_bytes=1000)
    assert share.share(0.0, 0, 0) is None  # nothing sent yet
    assert share.share(1.0, 5, 100_000) == pytest.approx(0.05)  # 5 of about 100 packets
    assert share.share(1.5, 0, 150_000) == pytest.approx(5 / 150)
    assert share.share(4.0, 0, 250_000) is None  # the window holds one sample: none sent
    assert share.share(4.5, 200, 251_000) == 1.0  # at most all of them
