"""The quality ladder and the quality controller's options, as validated value types.

A :class:`Rung` is one quality level (output height, frame rate, video bitrate); a ladder
is a tuple of rungs from the top (best) one down, :data:`DEFAULT_LADDER` the one calls use.
:class:`QualityOptions` holds the ladder and every threshold of
:class:`~media.congestion.controller.QualityController`; what each one does is in
``docs/congestion.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

__all__ = ["DEFAULT_LADDER", "QualityOptions", "Rung", "check_ladder", "fit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rung:
    """One quality level: output height (px), frame rate and video bitrate (bps)."""

    height: int
    fps: int
    bitrate: int

    def __post_init__(self) -> None:
        if self.height < 16 or self.height % 2:
            raise ValueError(f"rung height must be an even number >= 16, got {self.height}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"rung fps must be within 1..60, got {self.fps}")
        if self.bitrate < 10_000:
            raise ValueError(f"rung bitrate must be >= 10 kbps, got {self.bitrate}")


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung(height=720, fps=25, bitrate=2_000_000),
    Rung(height=512, fps=25, bitrate=1_200_000),
    Rung(height=384, fps=20, bitrate=600_000),
    Rung(height=256, fps=15, bitrate=300_000),
    Rung(height=192, fps=10, bitrate=150_000),
)


def check_ladder(ladder: tuple[Rung, ...]) -> None:
    """ValueError unless ``ladder`` has a rung and goes strictly down in bitrate from the
    top (best) rung, and never up in size or frame rate."""
    if not ladder:
        raise ValueError("the ladder needs at least one rung")
    for hi, lo in pairwise(ladder):
        if lo.bitrate >= hi.bitrate or lo.height > hi.height or lo.fps > hi.fps:
            raise ValueError(
                f"ladder must go strictly down in bitrate (and not up in size or fps): "
                f"{hi} then {lo}"
            )


def fit(ladder: tuple[Rung, ...], target: float) -> int:
    """Index of the best rung whose bitrate fits under ``target`` (else the bottom one)."""
    for i, rung in enumerate(ladder):
        if rung.bitrate <= target:
            return i
    return len(ladder) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityOptions:
    """Controller options. ``ladder`` is ordered from the top (best) rung down."""

    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    start_index: int = 0
    loss_threshold: float = 0.05  # fraction lost (0..1) that counts as congestion
    remb_loss_guard: float = 0.01  # reported loss above this: REMB alone is not trusted
    severe_ratio: float = 0.7  # REMB under this share of the send rate: drain the queue
    remb_window_s: float = 1.5  # a REMB 5 % under the highest of this window fell
    # this many REMBs within remb_busy_s: the receiver's estimator is in overuse, where each
    # is 0.85x what arrives (in its increase state it sends about one a second)
    remb_busy_count: int = 4
    remb_busy_s: float = 0.5
    drain_s: float = 1.0
    severe_queue_s: float = 0.4  # RTT this far over its minimum: a deep queue, go to the bottom
    severe_loss: float = 0.2  # loss over this: bottom rung and drain
    max_drain_s: float = 1.5
    rtt_rise_s: float = 0.12  # RTT above the smallest seen by this much = a queue
    rtt_window_s: float = 30.0  # the smallest RTT is taken over this window
    queue_threshold_s: float = 0.15  # sender queue depth that counts as congestion
    render_lag_threshold_s: float = 0.1  # renderer behind by this much = too heavy a rung
    backoff: float = 0.85  # target after a queue is seen: this share of it
    down_hold_s: float = 1.0
    up_hold_s: float = 1.0  # quiet time after congestion before growing; per rung step up
    max_up_hold_s: float = 4.0
    probe_window_s: float = 2.0
    probe_gain: float = 0.2  # target growth per second near the known capacity
    ramp_gain: float = 0.4  # target growth per second far from it
    max_probe_gain: float = 0.8  # the probe's growth after proofs in a row (the link cleared)
    near_capacity: float = 1.12  # within [capacity / this, capacity * this]: probe gently
    carried_margin: float = 1.08  # all we sent arrived and that is this x the capacity: more
    probe_ceiling: float = 1.15  # the gentle probe stops this far over the capacity
    rung_keep: float = 0.8  # a mild cut keeps the rung while the target is over this share
    overshoot: float = 1.2  # ... unless the encoder sends over this x its bitrate
    overdrive: float = 1.25  # sending this much more than arrives: a queue is growing
    min_fill: float = 0.8  # the probe's target rises at most 1 / this over what is sent
    settle_s: float = 1.0  # past that margin, wait this long for a clean RTT before ramping
    ramp_after_s: float = 3.0  # ... and this long without any congestion
    saturated_before_s: float = 0.3  # the link was full this long before a severe signal

    def __post_init__(self) -> None:
        check_ladder(self.ladder)
        if not 0 <= self.start_index < len(self.ladder):
            raise ValueError(f"start_index {self.start_index} is outside the ladder")
        if self.remb_window_s <= 0:
            raise ValueError(f"remb_window_s must be positive, got {self.remb_window_s}")
        if self.remb_busy_count < 2 or not 0 < self.remb_busy_s <= self.remb_window_s:
            raise ValueError("need remb_busy_count >= 2 and 0 < remb_busy_s <= remb_window_s")
        if not 0 < self.severe_ratio < 1 or not 0 <= self.drain_s <= self.max_drain_s <= 5:
            raise ValueError("need 0 < severe_ratio < 1 and 0 <= drain_s <= max_drain_s <= 5")
        if self.severe_queue_s <= self.rtt_rise_s or not 0 < self.severe_loss < 1:
            raise ValueError("need severe_queue_s > rtt_rise_s and 0 < severe_loss < 1")
        if not 0 < self.loss_threshold < 1:
            raise ValueError(f"loss_threshold must be in (0, 1), got {self.loss_threshold}")
        for name in ("rtt_rise_s", "rtt_window_s", "queue_threshold_s", "render_lag_threshold_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 < self.up_hold_s <= self.max_up_hold_s:
            raise ValueError("need 0 < up_hold_s <= max_up_hold_s")
        if self.down_hold_s < 0 or self.probe_window_s < 0:
            raise ValueError("down_hold_s and probe_window_s must be >= 0")
        if not 0 < self.backoff < 1:
            raise ValueError(f"backoff must be in (0, 1), got {self.backoff}")
        if not 0 < self.rung_keep <= 1 or self.overshoot <= 1:
            raise ValueError("need 0 < rung_keep <= 1 and overshoot > 1")
        if not 0 < self.probe_gain <= self.ramp_gain <= 2 or self.near_capacity <= 1:
            raise ValueError("need 0 < probe_gain <= ramp_gain <= 2 and near_capacity > 1")
        if not self.probe_gain <= self.max_probe_gain <= 2:
            raise ValueError("need probe_gain <= max_probe_gain <= 2")
        if self.probe_ceiling <= self.near_capacity or self.overdrive <= 1:
            raise ValueError("need probe_ceiling > near_capacity and overdrive > 1")
        if not 1 < self.carried_margin <= self.near_capacity:
            raise ValueError("need 1 < carried_margin <= near_capacity")
        if not 0 < self.min_fill <= 1:
            raise ValueError(f"min_fill must be in (0, 1], got {self.min_fill}")
