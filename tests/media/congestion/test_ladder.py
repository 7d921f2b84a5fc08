"""The quality ladder and QualityOptions: validation and the rung that fits a target."""

import pytest

from media.congestion.ladder import DEFAULT_LADDER, QualityOptions, Rung, check_ladder, fit


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ladder": ()}, "at least one rung"),
        ({"ladder": (DEFAULT_LADDER[1], DEFAULT_LADDER[0])}, "strictly down"),
        ({"start_index": 9}, "outside the ladder"),
        ({"backoff": 1.0}, "backoff"),
        ({"probe_gain": 0.5, "ramp_gain": 0.2}, "probe_gain"),
        ({"loss_threshold": 1.5}, "loss_threshold"),
        ({"min_fill": 0.0}, "min_fill"),
        ({"remb_busy_count": 1}, "remb_busy_count"),
        ({"up_hold_s": 20.0, "max_up_hold_s": 10.0}, "up_hold_s"),
    ],
)
def test_options_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        QualityOptions(**kwargs)


def test_bad_rungs_are_rejected() -> None:
    with pytest.raises(ValueError, match="height"):
        Rung(height=15, fps=10, bitrate=100_000)
    with pytest.raises(ValueError, match="fps"):
        Rung(height=100, fps=0, bitrate=100_000)
    with pytest.raises(ValueError, match="bitrate"):
        Rung(height=100, fps=10, bitrate=9_999)


def test_a_ladder_goes_down_in_bitrate_and_never_up_in_size() -> None:
    check_ladder(DEFAULT_LADDER)
    taller = (Rung(height=256, fps=15, bitrate=300_000), Rung(height=384, fps=10, bitrate=150_000))
    with pytest.raises(ValueError, match="strictly down"):
        check_ladder(taller)


def test_fit_picks_the_best_rung_under_the_target() -> None:
    assert fit(DEFAULT_LADDER, 5_000_000) == 0
    assert fit(DEFAULT_LADDER, 2_000_000) == 0
    assert fit(DEFAULT_LADDER, 1_999_999) == 1
    assert fit(DEFAULT_LADDER, 400_000) == 3
    assert fit(DEFAULT_LADDER, 10_000) == len(DEFAULT_LADDER) - 1  # the bottom one at worst
