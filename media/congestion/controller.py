"""Congestion-driven quality control: a pure state machine that picks a rung and a bitrate.

:class:`QualityController` takes network and pipeline measurements (REMB estimate, RTCP
receiver-report loss, RTT and jitter, the rates sent and delivered, the sender's queue
depth, the renderer's lag), each noted by its own ``on_*`` method; ``tick(now)`` weighs
those noted since the last tick, with the current time as a parameter, and decides. It
keeps a *target bitrate*; the rung is the best one of the ladder
(:mod:`media.congestion.ladder`) whose bitrate fits under the target, and the encoder gets
the target itself (up to the next rung's bitrate), so the rate can follow the link between
rungs without a size change. The policy, down fast and up slowly (each signal, the action
it gets, and why), is in ``docs/congestion.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from media.congestion.ladder import QualityOptions, Rung, fit

__all__ = ["QualityController"]

_FED_WINDOW_S = 1.0  # aiortc's REMB is 0.85x of what arrived over the last second


@dataclass(slots=True)
class _Probe:
    index: int  # the rung probed (reached by stepping up)
    since: float


@dataclass(slots=True)
class _State:
    index: int
    target: float
    capacity: float | None = None  # what got through when congestion was last seen
    measure_until: float = -math.inf  # delivered rates until then are the link's rate
    severe_at: float = -math.inf  # when the last severe signal came
    delivered_seen: bool = False  # receiver reports carry delivered rates
    boost: float = 1.0  # probe_gain multiplier: doubles each time the link proves better
    measured: float = 0.0  # the best delivered rate seen while measuring
    capacity_cap: float = math.inf  # the capacity the severe signal itself implied
    confirmed: bool = True  # a queue (RTT rise, heavy loss) was seen since the severe signal
    passed_at: float | None = None  # when the target passed the capacity's upper margin
    last_change: float | None = None
    last_down: float | None = None
    last_bad: float | None = None
    last_update: float | None = None
    probe: _Probe | None = None
    hold: dict[int, float] = field(default_factory=dict)  # rung index -> hold before trying it
    rtts: list[tuple[float, float]] = field(default_factory=list)  # (time, rtt)
    loss: float = 0.0  # the last reported fraction lost
    rtt_rising: bool = False  # the last RTT was over the baseline
    rembs: list[tuple[float, float]] = field(default_factory=list)  # (time, REMB), recent
    bitrates: list[tuple[float, float]] = field(default_factory=list)  # (time, bitrate), 1 s
    clean_rtt_at: float | None = None  # when the last RTT without a rise arrived
    repaired: float = 0.0  # the last share of packets NACKed
    fill: float = 1.0  # the share of its bitrate the encoder sent lately (min_fill..1)


@dataclass(slots=True)
class _Report:
    """The measurements noted since the last tick (None: none came)."""

    remb_bps: float | None = None
    fraction_lost: float | None = None
    rtt_s: float | None = None
    jitter_s: float = 0.0
    repaired: float | None = None
    send_bps: float | None = None
    delivered_bps: float | None = None
    delivered_window_s: float = 0.0
    send_queue_s: float | None = None
    render_lag_s: float | None = None


@dataclass(slots=True)
class _Verdict:
    """What one tick's measurements ask for."""

    reasons: list[str] = field(default_factory=list)
    cut: float | None = None  # the target congestion asks for
    severe: bool = False
    drain: float = 0.0
    evidence: bool = False  # of a standing queue: an RTT rise or heavy loss
    step_down: bool = False  # at least one rung down

    def ask(self, reason: str, cut: float) -> None:
        self.reasons.append(reason)
        self.cut = min(self.cut or math.inf, cut)

    def step(self, reason: str) -> None:
        self.reasons.append(reason)
        self.step_down = True


class QualityController:
    """Picks a rung and a bitrate from congestion signals; time is passed in (``now``).

    Note each measurement as it comes (``on_remb``, ``on_loss``, ``on_rtt``, ...; the
    latest of each counts), then ``tick(now)``: it weighs them all together, in a fixed
    order whatever order they came in, and returns a new rung or None."""

    def __init__(self, options: QualityOptions | None = None) -> None:
        self.options = options or QualityOptions()
        start = self.options.start_index
        self._s = _State(index=start, target=float(self.options.ladder[start].bitrate))
        self._report = _Report()
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

    @property
    def target(self) -> float:
        """The target bitrate (bps) the controller believes the link carries."""
        return self._s.target

    @property
    def capacity(self) -> float | None:
        """What got through when congestion was last seen (bps), until the link improves."""
        return self._s.capacity

    @property
    def bitrate(self) -> int:
        """The encoder's bitrate: the target, between ``rung_keep`` of the rung's rate and the
        next rung's rate."""
        s, ladder = self._s, self.options.ladder
        ceiling = ladder[s.index - 1].bitrate if s.index > 0 else ladder[0].bitrate
        if s.index == len(ladder) - 1:
            floor = ladder[-1].bitrate / 2
        else:
            floor = ladder[s.index].bitrate * self.options.rung_keep
        return int(min(ceiling, max(floor, s.target)))

    def up_hold(self, index: int) -> float:
        """Seconds without congestion needed before stepping up to rung ``index``."""
        return self._s.hold.get(index, self.options.up_hold_s)

    # ---- measurements: each notes the latest value, the next tick weighs them ------------
    def on_remb(self, bps: float) -> None:
        """The receiver's REMB estimate (video's share of it)."""
        self._report.remb_bps = bps

    def on_loss(self, fraction_lost: float) -> None:
        """The fraction lost of a receiver report, 0..1 (RTCP's 8-bit value / 256)."""
        if not 0 <= fraction_lost <= 1:
            raise ValueError(f"fraction_lost must be within 0..1, got {fraction_lost}")
        self._report.fraction_lost = fraction_lost

    def on_rtt(self, rtt_s: float, jitter_s: float = 0.0) -> None:
        """A round-trip time; the receiver's ``jitter_s`` widens the margin of a rise
        (jittery paths have noisier RTTs)."""
        self._report.rtt_s, self._report.jitter_s = rtt_s, jitter_s

    def on_repaired(self, share: float) -> None:
        """The share of packets the receiver NACKed lately: loss that retransmission
        repaired, which receiver reports do not count as lost."""
        self._report.repaired = share

    def on_sent(self, bps: float) -> None:
        """The video rate actually sent lately (REMB is compared with it)."""
        self._report.send_bps = bps

    def on_delivered(self, bps: float, window_s: float) -> None:
        """The rate that reached the receiver over the last ``window_s``. Measured from just
        before a severe signal until the queue has drained, it is the link's rate and
        becomes the capacity; a delivered rate well above the capacity shows the link got
        better."""
        self._report.delivered_bps, self._report.delivered_window_s = bps, window_s

    def on_send_queue(self, delay_s: float) -> None:
        """How long the sender's queue takes to empty."""
        self._report.send_queue_s = delay_s

    def on_render_lag(self, lag_s: float) -> None:
        """How far behind the renderer is."""
        self._report.render_lag_s = lag_s

    def tick(self, now: float) -> Rung | None:
        """Weigh the measurements noted since the last tick, as of ``now``; a new rung or
        None. Call it regularly (for example every 200 ms), also without new measurements,
        so the target can grow. Read :attr:`bitrate` after each: it can change without a
        rung change, and :attr:`drain_s` with a change."""
        o, s = self.options, self._s
        report, self._report = self._report, _Report()
        if s.last_change is None:
            s.last_change = now
        # growth per elapsed time, but never more than a second's worth in one tick
        dt = 0.0 if s.last_update is None else min(1.0, max(0.0, now - s.last_update))
        s.last_update = now
        sent = self._sent(now, report.send_bps)
        v = _Verdict()
        if report.fraction_lost is not None:
            self._weigh_loss(report.fraction_lost, sent, v)
        if report.rtt_s is not None:
            self._weigh_rtt(now, report.rtt_s, report.jitter_s, v)
        if report.repaired is not None:
            s.repaired = report.repaired
        if report.remb_bps is not None:
            self._weigh_remb(now, report.remb_bps, sent, report.send_bps, v)
        self._weigh_pipeline(report, v)
        if v.evidence and not s.confirmed:
            s.confirmed = True
            if now <= s.measure_until and s.measured > 0:
                s.capacity = min(s.capacity_cap, s.measured)
        remb = report.remb_bps
        if remb is not None and s.severe_at + _FED_WINDOW_S <= now <= s.measure_until:
            # the second REMB averages began as the queue started to drain: the link's rate
            self._measured(remb / o.backoff)
        if report.delivered_bps is not None:
            began = now - report.delivered_window_s
            self._weigh_delivered(now, report.delivered_bps, began, report.send_bps, v)
        return self._decide(now, dt, v, report.send_bps)

    # ---- weighing one tick's measurements ----------------------------------------------
    def _sent(self, now: float, send_bps: float | None) -> float:
        """What we send (at most the encoder's bitrate); notes the encoder's fill and its
        bitrate at this tick (it is in force until now)."""
        o, s, bitrate = self.options, self._s, self.bitrate
        if send_bps is not None:
            s.fill = min(1.0, max(o.min_fill, send_bps / bitrate))
        s.bitrates = [(t, b) for t, b in s.bitrates if t >= now - _FED_WINDOW_S][-63:]
        s.bitrates.append((now, float(bitrate)))
        return min(send_bps if send_bps is not None else bitrate, bitrate)

    def _weigh_loss(self, lost: float, sent: float, v: _Verdict) -> None:
        o, s = self.options, self._s
        s.loss = lost
        if lost <= o.loss_threshold:
            return
        v.ask(f"loss {lost:.0%}", s.target * (1 - lost / 2))
        if sent >= o.ladder[-1].bitrate:  # not while paused: that says nothing
            s.capacity = sent * (1 - lost)
        if lost > o.severe_loss:  # a drop-tail queue is full: drain it
            v.severe, v.drain, v.evidence = True, o.drain_s, True

    def _weigh_rtt(self, now: float, rtt: float, jitter: float, v: _Verdict) -> None:
        o, s = self.options, self._s
        queue = self._rtt_rise(now, rtt, jitter)
        s.rtt_rising = queue is not None
        if queue is None:
            s.clean_rtt_at = now
            return
        v.evidence = True
        v.ask(f"rtt {rtt * 1000:.0f} ms", s.target * o.backoff)
        v.drain = min(o.max_drain_s, queue)  # pause about as long as the queue is deep
        v.severe = v.severe or queue > o.severe_queue_s

    def _weigh_remb(
        self, now: float, remb: float, sent: float, send_bps: float | None, v: _Verdict
    ) -> None:
        o, s = self.options, self._s
        # the highest recent REMB, else the last one (the first ever counts as a fall)
        recent = [(t, r) for t, r in s.rembs if t >= now - o.remb_window_s] or s.rembs[-1:]
        fell = not recent or remb < 0.95 * max(r for _, r in recent)
        s.rembs = [*recent, (now, remb)]
        busy = sum(1 for t, _ in s.rembs if t >= now - o.remb_busy_s) >= o.remb_busy_count
        if max(s.loss, s.repaired) > o.remb_loss_guard and not s.rtt_rising:
            return  # lossy without a queue: retransmits read as delay spikes
        if remb >= o.backoff * sent or not (fell or busy):
            return
        if not fell:
            # held low, not falling: 0.85x what arrives, under 0.85x what we send: a queue
            # grows by the difference (a probe crept over the link); a mild cut to it
            v.ask(f"remb {remb / 1000:.0f} kbps held", remb)
            s.capacity = min(s.capacity or math.inf, remb / o.backoff)
            return
        v.ask(f"remb {remb / 1000:.0f} kbps", remb)
        s.capacity = remb / o.backoff  # aiortc's REMB is 0.85x what arrives
        # what was sent over the last second, as REMB's own window counts: a cut made a
        # moment ago does not make the receiver's shortfall look smaller (but a keyframe
        # over the bitrate is not a rate the link was asked for)
        fed = max(sent, min(send_bps or 0.0, max(b for _, b in s.bitrates)))
        if remb < o.severe_ratio * fed:
            # sending far more than gets through: a deep queue is filling; the bottom rung
            # leaves the most room to empty it
            v.severe, v.drain = True, max(v.drain, o.drain_s)

    def _weigh_pipeline(self, report: _Report, v: _Verdict) -> None:
        """A send queue or a lagging renderer: one rung down."""
        o = self.options
        if report.send_queue_s is not None and report.send_queue_s > o.queue_threshold_s:
            v.step(f"send queue {report.send_queue_s * 1000:.0f} ms")
        if report.render_lag_s is not None and report.render_lag_s > o.render_lag_threshold_s:
            v.step(f"render lag {report.render_lag_s * 1000:.0f} ms")

    def _weigh_delivered(
        self, now: float, delivered: float, began: float, send_bps: float | None, v: _Verdict
    ) -> None:
        o, s = self.options, self._s
        s.delivered_seen = True
        if now <= s.measure_until and began >= s.severe_at - o.saturated_before_s:
            # a full queue drains at the link's rate: the best rate seen meanwhile (a
            # window from before the onset mixes in the old rate; later ones idle)
            self._measured(delivered)
        elif (
            s.capacity is not None
            and s.boost == 1.0
            and send_bps is not None
            and send_bps > o.overdrive * delivered
        ):
            # we send clearly more than arrives: a queue is growing in between
            v.ask(f"delivered {delivered / 1000:.0f} kbps", delivered * o.backoff)
            s.capacity = delivered
        elif s.capacity is not None and (
            delivered > s.capacity * o.near_capacity
            or (
                send_bps is not None
                and delivered >= 0.95 * send_bps
                and delivered > s.capacity * o.carried_margin
            )
        ):
            # it carried more (clearly more than the capacity, or all we sent when that was
            # more: an encoder short of its target cannot show the first): the link got
            # better; probe on from there, faster each time this repeats without
            # congestion in between
            s.capacity = delivered
            s.boost = min(s.boost * 2, o.max_probe_gain / o.probe_gain)

    def _decide(self, now: float, dt: float, v: _Verdict, send_bps: float | None) -> Rung | None:
        """Down on congestion, else maybe up."""
        o, s = self.options, self._s
        self.drain_s = 0.0
        if not v.reasons:
            return self._maybe_up(now, dt)
        s.last_bad = now
        if s.severe_at < now <= s.measure_until and not v.step_down:
            # echoes of the queue a severe signal already answered (reports sent while it
            # drained): no new cut, but no growth either
            return None
        s.passed_at, s.boost = None, 1.0
        if v.severe and now > s.measure_until:  # a new episode (not its stale echoes)
            s.measure_until = now + v.drain + 2.5
            s.severe_at, s.measured, s.confirmed = now, 0.0, v.evidence
            s.capacity_cap = max(
                s.capacity if s.capacity is not None else math.inf, o.ladder[-1].bitrate
            )
        # an encoder sending well over its rate cannot be trusted to hold a lower one within
        # the rung: no hysteresis then
        overshoot = send_bps is not None and send_bps > o.overshoot * self.bitrate
        rung = self._down(now, v, overshoot)
        if rung is not None:
            self.drain_s = v.drain
        return rung

    # ---- internals ---------------------------------------------------------------------
    def _measured(self, rate: float) -> None:
        """A rate the link carried while a severe signal's queue drained."""
        s, o = self._s, self.options
        s.measured = max(s.measured, rate, o.ladder[-1].bitrate)
        if s.confirmed:
            s.capacity = min(s.capacity_cap, s.measured)
        elif math.isfinite(s.capacity_cap):
            # no queue seen (yet): a REMB dip from a delay step, not a full link; what
            # arrives while video pauses says nothing of the link's rate
            s.capacity = s.capacity_cap
        if s.capacity is not None:
            s.target = max(o.ladder[-1].bitrate / 2, min(s.target, s.capacity * o.backoff))

    def _rtt_rise(self, now: float, rtt: float, jitter: float) -> float | None:
        """The queueing delay (RTT over its window minimum) if it counts as a rise."""
        s, o = self._s, self.options
        s.rtts.append((now, rtt))
        while s.rtts and s.rtts[0][0] < now - o.rtt_window_s:
            s.rtts.pop(0)
        queue = rtt - min(r for _, r in s.rtts)
        return queue if queue > o.rtt_rise_s + 2 * jitter else None

    def _down(self, now: float, v: _Verdict, overshoot: bool) -> Rung | None:
        s, o = self._s, self.options
        cut, severe, step_down, reason = v.cut, v.severe, v.step_down, "; ".join(v.reasons)
        last = len(o.ladder) - 1
        probe = s.probe
        failed = (
            probe is not None and probe.index == s.index and now - probe.since <= o.probe_window_s
        )
        if not failed and not severe and s.last_down is not None:
            if now - s.last_down < o.down_hold_s:
                return None  # the last cut has not reached the reports yet
        if failed and probe is not None:  # back off before trying this rung again
            s.hold[probe.index] = min(o.max_up_hold_s, 2 * self.up_hold(probe.index))
            s.probe = None
            reason = f"probe failed: {reason}"
        s.last_down = now
        target = s.target if cut is None else min(s.target, cut)
        if severe:
            target = min(target, o.ladder[last].bitrate)
        if step_down or failed:  # at least one rung down
            target = min(target, o.ladder[s.index].bitrate * o.backoff)
        s.target = max(target, o.ladder[last].bitrate / 2)
        # hysteresis: a mild cut lowers the encoder's rate within the rung (no keyframe, no
        # new size) while the target stays over rung_keep of it; a severe signal, a step
        # down or a failed probe needs the rung's own rate to fit
        keep = 1.0 if severe or step_down or failed or overshoot else o.rung_keep
        kept = s.target >= keep * o.ladder[s.index].bitrate
        index = s.index if kept else max(s.index, fit(o.ladder, s.target))
        if index == s.index:
            self.reason = reason  # a bitrate cut within the rung
            return None
        if not failed:  # the rung we leave was not sustainable: wait longer for it too
            s.hold[s.index] = min(o.max_up_hold_s, 2 * self.up_hold(s.index))
        return self._set(now, index, reason)

    def _maybe_up(self, now: float, dt: float) -> Rung | None:
        s, o = self._s, self.options
        probe = s.probe
        if probe is not None and now - probe.since > o.probe_window_s:
            self._probe_passed(probe.index)  # it held: the rung is trusted again
        quiet_since = max(t for t in (s.last_bad, s.last_change) if t is not None)
        if s.last_bad is not None and now - s.last_bad < o.up_hold_s:
            return None
        if s.rtts and (s.clean_rtt_at is None or s.clean_rtt_at < quiet_since):
            return None  # no clean RTT yet since the last change or congestion
        self._grow(now, dt)
        if s.index == 0:
            return None
        target = s.index - 1
        changed = s.last_change if s.last_change is not None else now
        if fit(o.ladder, s.target) > target or now - changed < self.up_hold(target):
            return None
        s.probe = _Probe(index=target, since=now)
        return self._set(now, target, "probe up")

    def _grow(self, now: float, dt: float) -> None:
        s, o = self._s, self.options
        top = float(o.ladder[0].bitrate)
        if s.target >= top or dt <= 0:
            s.target = min(s.target, top)
            return
        near = s.capacity is not None and s.target * o.near_capacity >= s.capacity
        gain = o.probe_gain * s.boost if near else max(o.ramp_gain, o.probe_gain * s.boost)
        if s.capacity is not None and s.target > s.capacity * o.near_capacity:
            # past the old limit: the link got better once a report from a second later
            # (time for a queue to show) is clean too
            if s.passed_at is None:
                s.passed_at = now
            clean = s.clean_rtt_at if s.rtts else now
            quiet = s.last_bad is None or now - s.last_bad >= o.ramp_after_s
            if s.delivered_seen:
                pass  # only a delivered rate above it proves more (_weigh_delivered)
            elif quiet and clean is not None and clean - s.passed_at >= o.settle_s:
                s.capacity, s.passed_at = None, None
            else:
                gain = o.probe_gain * s.boost
        # the probe stops a margin over the capacity, a margin that widens with the boost;
        # the margin is for what is sent: an encoder that fills only part of its bitrate
        # (dropped frames, plain content) gets a higher target for the same probe
        margin = 1 + (o.probe_ceiling - 1) * s.boost
        ceiling = top if s.capacity is None else min(top, s.capacity * margin / s.fill)
        s.target = min(ceiling, s.target * (1 + gain) ** dt)

    def _probe_passed(self, index: int) -> None:
        s, o = self._s, self.options
        s.probe = None
        s.hold.pop(index, None)
        for i in range(index):  # the rungs above it look less risky now
            if i in s.hold:
                s.hold[i] = max(o.up_hold_s, s.hold[i] / 2)

    def _set(self, now: float, index: int, reason: str) -> Rung:
        s = self._s
        if index > s.index:
            s.last_down = now
        s.index = index
        s.last_change = now
        self.reason = reason
        return self.options.ladder[index]
