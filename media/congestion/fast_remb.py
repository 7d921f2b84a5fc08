"""A receiver's congestion signal that arrives before the bottleneck queue overflows.

aiortc's receive-side estimator (:class:`aiortc.rate.RemoteBitrateEstimator`, Google's
REMB-era GCC) smooths the delay trend with a Kalman filter and an adaptive threshold: when a
2 Mbps call suddenly meets a 400 kbps link, its first REMB leaves the receiver 0.23-0.33 s
later (measured, ``scripts/bench_congestion.py``). By then a one-second drop-tail queue is
full and drops voice and video alike.

:class:`QueueRiseDetector` watches the one-way delay (arrival time minus the packet's
abs-send-time) for the shape of a queue that fills faster than it drains: a rise of at least
``min_rise_ms`` over at least ``min_packets`` packets, no single step carrying most of it
(a route's delay step is one step), at ``min_slope`` ms of delay per ms sent or more (the
sender puts over 2.5x what the link carries into it). While such a queue fills, the link
is busy, so what arrives over those packets *is* the link's rate: the signal is
``backoff`` times that rate, a REMB in aiortc's own convention (0.85x what arrived).

:class:`QueueGrowthDetector` catches the slow kind, a probe 10-50 % over the link: the
median delay rises over each of four 120 ms bins and ends 60 ms over its floor while less
arrives than was sent; its signal is 0.85x what arrived.

:class:`FastRemoteBitrateEstimator` runs aiortc's estimator and both detectors: a sudden
queue's REMB is sent at once when it is far (``drop_ratio``) under what arrived over the
last second, a growing queue's when it is under the last REMB; for a while after (``hold_ms``)
aiortc's own REMBs (0.85x of a second that began before the queue) are held under it.
:func:`install_fast_remb` gives one video receiver this estimator (aiortc's private slot,
:func:`media.aiortc_hooks.set_receiver_remb_estimator`); nothing global is patched. The bot
installs it with its receive buffers (:func:`.jitter.install_receive_buffers`). A browser
receiving the call sends its own REMB (aiortc's estimator is a port of Chrome's receive-side
one): this helps the bot and any aiortc client, not a browser.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media.aiortc_hooks import receiver_remb_estimator, set_receiver_remb_estimator

__all__ = [
    "FastRemoteBitrateEstimator",
    "QueueGrowthDetector",
    "QueueGrowthOptions",
    "QueueRiseDetector",
    "QueueRiseOptions",
    "RembObserver",
    "SlidingMin",
    "install_fast_remb",
]

_ABS_SEND_WRAP = 1 << 24  # abs-send-time: 24 bits of 6.18 fixed-point seconds (64 s)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRiseOptions:
    window_ms: float = 300.0  # send-time history kept
    min_rise_ms: float = 50.0  # over a jitter range of +-20 ms
    min_packets: int = 3  # packets after the queue's start
    min_slope: float = 1.5  # ms of queue per ms sent: sending > 2.5x what the link carries
    max_step_share: float = 0.5  # a delay step is one step: no step may carry more
    tolerance_ms: float = 4.0  # a dip this small does not end a rise
    backoff: float = 0.85  # the REMB is this share of what arrived (aiortc's convention)

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.min_rise_ms <= 0 or self.min_slope <= 0:
            raise ValueError("window_ms, min_rise_ms and min_slope must be positive")
        if self.min_packets < 2:
            raise ValueError(f"min_packets must be >= 2, got {self.min_packets}")
        if not 0 < self.max_step_share <= 1 or not 0 < self.backoff <= 1:
            raise ValueError("max_step_share and backoff must be within (0, 1]")


@dataclass(frozen=True, slots=True)
class _Arrival:
    send_ms: float
    delay_ms: float
    arrival_ms: float
    size: int


class SlidingMin:
    """The lowest delay of the last ``window_ms`` of send time, in O(1) amortized."""

    def __init__(self, window_ms: float) -> None:
        self.window_ms = window_ms
        self._rising: deque[tuple[float, float]] = deque()  # (send ms, delay), delays rise

    def add(self, send_ms: float, delay_ms: float) -> float:
        """Add one packet; the lowest delay in the window that ends with it."""
        q = self._rising
        while q and q[-1][1] >= delay_ms:
            q.pop()
        q.append((send_ms, delay_ms))
        while q[0][0] < send_ms - self.window_ms:
            q.popleft()
        return q[0][1]


class QueueRiseDetector:
    """A filling bottleneck queue in the one-way delay of one stream. Pure: times are inputs."""

    def __init__(self, options: QueueRiseOptions | None = None) -> None:
        self.options = options or QueueRiseOptions()
        self._history: deque[_Arrival] = deque()
        self._lowest = SlidingMin(self.options.window_ms)

    def observe(self, *, arrival_ms: float, send_ms: float, size: int) -> int | None:
        """Add one packet (``send_ms`` unwrapped, any origin); the REMB (bps) if a queue
        is filling, else None."""
        o, h = self.options, self._history
        delay = arrival_ms - send_ms
        h.append(_Arrival(send_ms, delay, arrival_ms, size))
        while h and h[0].send_ms < send_ms - o.window_ms:
            h.popleft()
        lowest = self._lowest.add(send_ms, delay)
        # no rise can be larger than this packet's delay over the window's lowest: the
        # common case (no queue) ends here without walking the window
        if len(h) <= o.min_packets or delay - lowest < o.min_rise_ms:
            return None
        # the rise that ends with this packet: walk back while the delay keeps falling
        # (within the tolerance); it began at the last packet at that walk's floor (a flat
        # stretch before it is no part of the rise)
        items = list(h)
        begin = len(items) - 1
        for i in range(len(items) - 2, -1, -1):
            if items[i].delay_ms > items[i + 1].delay_ms + o.tolerance_ms:
                break
            begin = i
        floor = min(a.delay_ms for a in items[begin:]) + o.tolerance_ms
        start = max(i for i in range(begin, len(items)) if items[i].delay_ms <= floor)
        rise_items = items[start:]
        last, first = rise_items[-1], rise_items[0]
        rise = last.delay_ms - first.delay_ms
        if len(rise_items) - 1 < o.min_packets or rise < o.min_rise_ms:
            return None
        if rise < o.min_slope * max(last.send_ms - first.send_ms, 1.0):
            return None
        steps = (b.delay_ms - a.delay_ms for a, b in itertools.pairwise(rise_items))
        if max(steps) > o.max_step_share * rise:
            return None
        # the link's rate: from the first packet that waited (the rise's start may have
        # come before an idle gap), every later one left right after the one before it
        queued = rise_items[1]
        span = last.arrival_ms - queued.arrival_ms
        if span <= 0:
            return None
        arrived = sum(a.size for a in rise_items[2:])
        return round(o.backoff * arrived * 8 * 1000 / span)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueGrowthOptions:
    bins: int = 4  # the recent send time, in bins of ``bin_ms``
    bin_ms: float = 120.0
    min_step_ms: float = 5.0  # each bin's median delay over the one before
    min_queue_ms: float = 60.0  # the last bin's median over the delay floor
    floor_window_ms: float = 2000.0  # the floor: the lowest delay of this long
    max_arrival_share: float = 0.95  # what arrives under this share of what was sent
    check_every_ms: float = 50.0
    backoff: float = 0.85

    def __post_init__(self) -> None:
        if self.bins < 2 or self.bin_ms <= 0 or self.floor_window_ms <= 0:
            raise ValueError("bins must be >= 2, bin_ms and floor_window_ms positive")
        if not 0 < self.max_arrival_share < 1 or not 0 < self.backoff <= 1:
            raise ValueError("max_arrival_share must be within (0, 1), backoff (0, 1]")


class QueueGrowthDetector:
    """A queue that grows steadily, if slowly: a rate a little over the link (a probe).

    The median one-way delay rises by ``min_step_ms`` or more from each ``bin_ms`` of send
    time to the next and ends ``min_queue_ms`` over the delay floor, while what arrives is
    under ``max_arrival_share`` of what was sent (a queue takes the difference). Medians
    keep one late packet or a stall of the receiving loop out; a route's delay step raises
    one bin, not each. The signal is ``backoff`` times the rate that arrived. Pure.
    """

    def __init__(self, options: QueueGrowthOptions | None = None) -> None:
        self.options = options or QueueGrowthOptions()
        self._history: deque[_Arrival] = deque()
        self._floor = SlidingMin(self.options.floor_window_ms)
        self._checked_at = -math.inf

    def observe(self, *, arrival_ms: float, send_ms: float, size: int) -> int | None:
        o, h = self.options, self._history
        delay = arrival_ms - send_ms
        h.append(_Arrival(send_ms, delay, arrival_ms, size))
        span = o.bins * o.bin_ms
        while h and h[0].send_ms < send_ms - span:
            h.popleft()
        floor = self._floor.add(send_ms, delay)
        if arrival_ms - self._checked_at < o.check_every_ms:
            return None
        self._checked_at = arrival_ms
        if h[0].send_ms > send_ms - span + o.bin_ms / 2:
            return None  # not enough history yet
        start = send_ms - span
        bins: list[list[float]] = [[] for _ in range(o.bins)]
        for a in h:
            k = int((a.send_ms - start) // o.bin_ms)
            if k >= 0:  # (an out-of-order packet may be older than the window)
                bins[min(o.bins - 1, k)].append(a.delay_ms)
        if any(len(b) < 2 for b in bins):
            return None
        medians = [statistics.median(b) for b in bins]
        if any(b - a < o.min_step_ms for a, b in itertools.pairwise(medians)):
            return None
        if medians[-1] - floor < o.min_queue_ms:
            return None
        # the rates over the bins after the first (the queue was there all along)
        queued = [a for a in h if a.send_ms >= start + o.bin_ms]
        if len(queued) < 3 or queued[-1].arrival_ms <= queued[0].arrival_ms:
            return None
        size_after = sum(a.size for a in queued) - queued[0].size
        arrived = size_after * 8 * 1000 / (queued[-1].arrival_ms - queued[0].arrival_ms)
        sent = size_after * 8 * 1000 / max(queued[-1].send_ms - queued[0].send_ms, 1.0)
        if arrived >= o.max_arrival_share * sent:
            return None
        return round(o.backoff * arrived)


RembObserver = Callable[[int, int, bool], None]  # (arrival ms, bps, from the fast signal)


class FastRemoteBitrateEstimator(RemoteBitrateEstimator):
    """aiortc's receive-side estimator plus :class:`QueueRiseDetector` and
    :class:`QueueGrowthDetector` (see the module doc).

    A sudden queue's REMB is sent when it is under ``drop_ratio`` of what arrived over the
    last second (and of the last REMB); a slowly growing queue's when it is under
    ``growth_ratio`` of the last REMB, at most once per ``growth_hold_ms``. ``on_remb``
    (optional) sees every REMB this estimator asks the receiver to send; ``detect=False``
    leaves aiortc's estimator alone (an observed baseline).
    """

    def __init__(
        self,
        options: QueueRiseOptions | None = None,
        growth: QueueGrowthOptions | None = None,
        *,
        detect: bool = True,
        drop_ratio: float = 0.7,
        growth_ratio: float = 0.95,
        hold_ms: int = 1000,
        growth_hold_ms: int = 500,
        on_remb: RembObserver | None = None,
    ) -> None:
        super().__init__()
        if not 0 < drop_ratio < 1 or not 0 < growth_ratio < 1:
            raise ValueError("drop_ratio and growth_ratio must be within (0, 1)")
        if hold_ms < 0 or growth_hold_ms < 0:
            raise ValueError("hold_ms and growth_hold_ms must be >= 0")
        self.queue_rise = QueueRiseDetector(options) if detect else None
        self.queue_growth = QueueGrowthDetector(growth) if detect else None
        self.drop_ratio, self.growth_ratio = drop_ratio, growth_ratio
        self.hold_ms, self.growth_hold_ms, self.on_remb = hold_ms, growth_hold_ms, on_remb
        self.fast_signals = 0  # sudden queues
        self.growth_signals = 0  # slowly growing ones
        self._held: tuple[int, int] | None = None  # (until ms, bps)
        self._ours_at: int | None = None  # when our last signal left
        self._last_send: int | None = None  # unwrapped abs-send-time units
        self._last_remb: int | None = None

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        arrived = self.incoming_bitrate.rate(arrival_time_ms)  # the last second, before this
        out = super().add(arrival_time_ms, abs_send_time, payload_size, ssrc)
        now = arrival_time_ms
        if self._held is not None and now >= self._held[0]:
            self._held = None
        send, in_order = self._unwrap(abs_send_time)
        # a packet sent before the newest one seen (reordered, or a retransmission that
        # keeps its first send time) says nothing about the queue now
        if self.queue_rise is not None and self.queue_growth is not None and in_order:
            send_ms = send * 1000 / (1 << 18)
            sudden = self.queue_rise.observe(arrival_ms=now, send_ms=send_ms, size=payload_size)
            growing = self.queue_growth.observe(arrival_ms=now, send_ms=send_ms, size=payload_size)
            reference = min(arrived or 0, self._last_remb or arrived or 0)
            if sudden is not None and sudden < self.drop_ratio * reference:
                self.fast_signals += 1
                return self._ours(now, sudden, self.hold_ms)
            if (
                growing is not None
                and self._last_remb is not None
                and growing < self.growth_ratio * self._last_remb
                and (self._ours_at is None or now - self._ours_at >= self.growth_hold_ms)
            ):
                self.growth_signals += 1
                return self._ours(now, growing, self.growth_hold_ms)
        if out is None:
            return None
        bps = out[0]
        if self._held is not None and bps > self._held[1]:
            bps = self._held[1]  # aiortc's second still holds the rate before the queue
            self.rate_control.set_estimate(bps, now)
        return self._emit(now, bps, False)

    def _ours(self, now: int, bps: int, hold_ms: int) -> tuple[int, list[int]]:
        self._held, self._ours_at = (now + hold_ms, bps), now
        self.rate_control.set_estimate(bps, now)
        return self._emit(now, bps, True)

    def _emit(self, now: int, bps: int, fast: bool) -> tuple[int, list[int]]:
        self._last_remb = bps
        if self.on_remb is not None:
            self.on_remb(now, bps, fast)
        return bps, list(self.ssrcs.keys())

    def _unwrap(self, abs_send_time: int) -> tuple[int, bool]:
        """The send time without its 64 s wrap, and whether it is the newest yet."""
        last = self._last_send
        if last is None:
            self._last_send = abs_send_time
            return abs_send_time, True
        delta = (abs_send_time - last) % _ABS_SEND_WRAP
        if delta >= _ABS_SEND_WRAP // 2:
            return last + delta - _ABS_SEND_WRAP, False  # an older packet
        self._last_send = last + delta
        return last + delta, True


def install_fast_remb(
    receiver: RTCRtpReceiver, *, detect: bool = True, on_remb: RembObserver | None = None
) -> FastRemoteBitrateEstimator:
    """Give a *video* receiver a :class:`FastRemoteBitrateEstimator` (before media flows)."""
    if receiver.track is None or receiver.track.kind != "video":
        raise ValueError("install_fast_remb needs a video receiver")
    if receiver_remb_estimator(receiver) is None:
        raise RuntimeError("this aiortc version has no receive-side bitrate estimator slot")
    estimator = FastRemoteBitrateEstimator(detect=detect, on_remb=on_remb)
    set_receiver_remb_estimator(receiver, estimator)
    return estimator
