"""Congestion-driven quality ladder: a pure state machine that picks a rung.

:class:`QualityController` takes network and pipeline measurements (REMB estimate, RTCP
receiver-report loss, RTT and jitter, the sender's queue depth, the renderer's lag) with the
current time as a parameter, and answers with the rung to switch to, or ``None`` to stay.

Policy: down fast, up slowly.

- *Down*: loss, an RTT rise over the smallest RTT seen (a queue building up), a send queue
  or a lagging renderer step down one rung, at most once per ``down_hold_s`` (the next
  report must see the effect of the last step). A REMB estimate jumps straight to the
  highest rung that fits it (the bottom rung when we send more than twice the estimate),
  but only when it *fell* by 5 % (aiortc's estimator lowers it only on
  overuse, to 0.85x of what it receives) and is under what we actually send (``send_bps``;
  the rung's bitrate when unknown). Other REMBs are no signal: aiortc raises its estimate
  by ~8 %/s up to ~1.5x of what it receives, so it lags behind a probe, and a static
  picture that encodes small keeps it low, without any congestion. While the receiver
  reports loss or NACKs packets (``remb_loss_guard``) and the RTT is not rising, REMB is
  ignored: aiortc
  retransmits packets with their original send time, so its estimator reads every repaired
  loss as a delay spike and its REMB sinks on a lossy but uncongested path.
- *Severe*: loss over ``severe_loss`` steps two rungs; an RTT over its minimum by more than
  ``severe_queue_s`` (a deep queue) goes to the bottom rung. With a change, ``drain_s``
  asks the sender to pause video (audio goes on) for about the queue's depth (the RTT
  rise) — or ``options.drain_s`` after a REMB under ``severe_ratio`` of the send rate or a
  loss over ``severe_loss`` — so the bottleneck queue empties instead of delaying every
  later frame.
- *Up*: one rung at a time, only after ``up_hold_s`` without any congestion signal and (once
  RTTs are known) a clean RTT measured ``settle_s`` after the last change: a queue that a
  rung above the link's rate fills slowly shows up in the RTT only about a second later. A step
  up is a probe: congestion within ``probe_window_s`` of it sends the controller straight
  back. Every rung left because of congestion (a failed probe or later) doubles its hold
  before it is tried again (up to ``max_up_hold_s``); a probe that survives resets it and
  halves the holds of the rungs above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_LADDER", "QualityController", "QualityOptions", "Rung"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityOptions:
    """Controller options. ``ladder`` is ordered from the top (best) rung down."""

    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    start_index: int = 0
    remb_headroom: float = 0.85  # a rung fits a REMB estimate if bitrate <= headroom * REMB
    loss_threshold: float = 0.05  # fraction lost (0..1) that counts as congestion
    remb_loss_guard: float = 0.01  # reported loss above this: REMB alone is not trusted
    severe_ratio: float = 0.7  # REMB under this share of the send rate: drain the queue
    drain_s: float = 1.0
    severe_queue_s: float = 0.4  # RTT this far over its minimum: a deep queue, go to the bottom
    severe_loss: float = 0.2  # loss over this: two rungs at once
    max_drain_s: float = 1.5
    rtt_rise_s: float = 0.12  # RTT above the smallest seen by this much = a queue
    rtt_window_s: float = 30.0  # the smallest RTT is taken over this window
    queue_threshold_s: float = 0.15  # sender queue depth that counts as congestion
    render_lag_threshold_s: float = 0.1  # renderer behind by this much = too heavy a rung
    down_hold_s: float = 1.0
    up_hold_s: float = 1.5
    max_up_hold_s: float = 4.0
    probe_window_s: float = 3.0
    settle_s: float = 0.5  # an RTT this long after the last change must be clean to go up

    def __post_init__(self) -> None:
        if not self.ladder:
            raise ValueError("the ladder needs at least one rung")
        for hi, lo in zip(self.ladder, self.ladder[1:], strict=False):
            if lo.bitrate >= hi.bitrate or lo.height > hi.height or lo.fps > hi.fps:
                raise ValueError(
                    f"ladder must go strictly down in bitrate (and not up in size or fps): "
                    f"{hi} then {lo}"
                )
        if not 0 <= self.start_index < len(self.ladder):
            raise ValueError(f"start_index {self.start_index} is outside the ladder")
        if not 0 < self.remb_headroom <= 1:
            raise ValueError(f"remb_headroom must be in (0, 1], got {self.remb_headroom}")
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


@dataclass(slots=True)
class _Probe:
    index: int  # the rung probed (reached by stepping up)
    since: float


@dataclass(slots=True)
class _State:
    index: int
    last_change: float | None = None
    last_down: float | None = None
    last_bad: float | None = None
    probe: _Probe | None = None
    hold: dict[int, float] = field(default_factory=dict)  # rung index -> hold before trying it
    rtts: list[tuple[float, float]] = field(default_factory=list)  # (time, rtt)
    loss: float = 0.0  # the last reported fraction lost
    rtt_rising: bool = False  # the last RTT was over the baseline
    remb: float | None = None  # the last REMB
    clean_rtt_at: float | None = None  # when the last RTT without a rise arrived
    repaired: float = 0.0  # the last share of packets NACKed


class QualityController:
    """Picks a rung of the ladder from congestion signals; time is passed in (``now``)."""

    def __init__(self, options: QualityOptions | None = None) -> None:
        self.options = options or QualityOptions()
        self._s = _State(index=self.options.start_index)
        self.reason = "start"  # why the last change happened (for logs and events)
        self.drain_s = 0.0  # with a change: pause video this long to empty a queue

    @property
    def ladder(self) -> tuple[Rung, ...]:
        return self.options.ladder

    @property
    def index(self) -> int:
        """Index of the current rung (0 = top)."""
        return self._s.index

    @property
    def rung(self) -> Rung:
        return self.options.ladder[self._s.index]

    def up_hold(self, index: int) -> float:
        """Seconds without congestion needed before stepping up to rung ``index``."""
        return self._s.hold.get(index, self.options.up_hold_s)

    def update(
        self,
        now: float,
        *,
        remb_bps: float | None = None,
        fraction_lost: float | None = None,
        rtt_s: float | None = None,
        jitter_s: float | None = None,
        send_queue_s: float | None = None,
        render_lag_s: float | None = None,
        send_bps: float | None = None,
        repaired_loss: float | None = None,
    ) -> Rung | None:
        """Feed the measurements known at ``now`` (None = no new value); returns a new rung.

        ``send_bps`` is the video rate actually sent lately (REMB is compared with it).
        ``repaired_loss`` is the share of packets the receiver NACKed lately: loss that
        retransmission repaired, which receiver reports do not count as lost.

        ``fraction_lost`` is 0..1 (RTCP's 8-bit value / 256). ``jitter_s`` is informative:
        it widens the RTT margin (jittery paths have noisier RTTs). Call it regularly (for
        example every 200 ms), also without new measurements, so holds can expire.
        """
        o, s = self.options, self._s
        if s.last_change is None:
            s.last_change = now
        if fraction_lost is not None and not 0 <= fraction_lost <= 1:
            raise ValueError(f"fraction_lost must be within 0..1, got {fraction_lost}")

        reasons: list[str] = []
        last = len(o.ladder) - 1
        fit: int | None = None  # the rung a severe signal asks for (multi-step)
        drain = 0.0
        if fraction_lost is not None:
            s.loss = fraction_lost
            if fraction_lost > o.loss_threshold:
                reasons.append(f"loss {fraction_lost:.0%}")
                if fraction_lost > o.severe_loss:  # a drop-tail queue is full: drain it
                    fit, drain = min(last, s.index + 2), o.drain_s
        if rtt_s is not None:
            queue = self._rtt_rise(now, rtt_s, jitter_s or 0.0)
            s.rtt_rising = queue is not None
            if queue is None:
                s.clean_rtt_at = now
            if queue is not None:
                reasons.append(f"rtt {rtt_s * 1000:.0f} ms")
                drain = min(o.max_drain_s, queue)  # pause about as long as the queue is deep
                if queue > o.severe_queue_s:  # a deep queue: bottom rung
                    fit = last
        if repaired_loss is not None:
            s.repaired = repaired_loss
        remb_fell = remb_bps is not None and (s.remb is None or remb_bps < 0.95 * s.remb)
        if remb_bps is not None:
            s.remb = remb_bps
        lossy = max(s.loss, s.repaired) > o.remb_loss_guard
        if remb_bps is not None and remb_fell and (not lossy or s.rtt_rising):
            sent = min(send_bps if send_bps is not None else self.rung.bitrate, self.rung.bitrate)
            if remb_bps < o.remb_headroom * sent:
                if remb_bps < o.severe_ratio * sent:
                    # sending twice what gets through: a deep queue is filling; the bottom
                    # rung leaves the most room to empty it
                    fit = last
                    drain = max(drain, o.drain_s)
                else:
                    fit = max(fit or 0, self._remb_fit(remb_bps))
                reasons.append(f"remb {remb_bps / 1000:.0f} kbps")
        if send_queue_s is not None and send_queue_s > o.queue_threshold_s:
            reasons.append(f"send queue {send_queue_s * 1000:.0f} ms")
        if render_lag_s is not None and render_lag_s > o.render_lag_threshold_s:
            reasons.append(f"render lag {render_lag_s * 1000:.0f} ms")

        self.drain_s = 0.0
        if reasons:
            s.last_bad = now
            rung = self._down(now, fit, "; ".join(reasons))
            if rung is not None:
                self.drain_s = drain
            return rung
        return self._maybe_up(now)

    # ---- internals ---------------------------------------------------------------------
    def _remb_fit(self, remb_bps: float) -> int:
        budget = remb_bps * self.options.remb_headroom
        for i, rung in enumerate(self.options.ladder):
            if rung.bitrate <= budget:
                return i
        return len(self.options.ladder) - 1

    def _rtt_rise(self, now: float, rtt: float, jitter: float) -> float | None:
        """The queueing delay (RTT over its window minimum) if it counts as a rise."""
        s, o = self._s, self.options
        s.rtts.append((now, rtt))
        while s.rtts and s.rtts[0][0] < now - o.rtt_window_s:
            s.rtts.pop(0)
        queue = rtt - min(r for _, r in s.rtts)
        return queue if queue > o.rtt_rise_s + 2 * jitter else None

    def _down(self, now: float, fit: int | None, reason: str) -> Rung | None:
        s, o = self._s, self.options
        last = len(o.ladder) - 1
        probe = s.probe
        if probe is not None and probe.index == s.index and now - probe.since <= o.probe_window_s:
            # the probe failed: back off before trying this rung again
            s.hold[probe.index] = min(o.max_up_hold_s, 2 * self.up_hold(probe.index))
            s.probe = None
            return self._set(now, min(last, s.index + 1), f"probe failed: {reason}", down=True)
        if s.last_down is not None and now - s.last_down < o.down_hold_s:
            return None
        target = min(last, s.index + 1)
        if fit is not None:
            target = max(target, fit)  # a severe signal: several rungs at once
        if target == s.index:
            return None
        # the rung we leave was not sustainable: wait longer before trying it again
        s.hold[s.index] = min(o.max_up_hold_s, 2 * self.up_hold(s.index))
        return self._set(now, target, reason, down=True)

    def _maybe_up(self, now: float) -> Rung | None:
        s, o = self._s, self.options
        probe = s.probe
        if probe is not None and now - probe.since > o.probe_window_s:
            self._probe_passed(probe.index)  # it held: the rung is trusted again
        if s.index == 0:
            return None
        quiet_since = max(t for t in (s.last_bad, s.last_change) if t is not None)
        target = s.index - 1
        if now - quiet_since < self.up_hold(target):
            return None
        if s.rtts and (s.clean_rtt_at is None or s.clean_rtt_at - quiet_since < o.settle_s):
            return None  # no clean RTT yet from a time the last change had settled in
        if s.probe is not None:  # the last probe stayed clean for a whole hold: trusted
            self._probe_passed(s.probe.index)
        s.probe = _Probe(index=target, since=now)
        return self._set(now, target, "probe up", down=False)

    def _probe_passed(self, index: int) -> None:
        s, o = self._s, self.options
        s.probe = None
        s.hold.pop(index, None)
        for i in range(index):  # the rungs above it look less risky now
            if i in s.hold:
                s.hold[i] = max(o.up_hold_s, s.hold[i] / 2)

    def _set(self, now: float, index: int, reason: str, *, down: bool) -> Rung:
        s = self._s
        s.index = index
        s.last_change = now
        if down:
            s.last_down = now
        self.reason = reason
        return self.options.ladder[index]
