"""The sender's own view of a bottleneck queue, from the receiver's transport feedback.

A browser's REMB reacts to a sudden bottleneck only after 0.7-0.8 s (measured with
aiortc's port of its estimator, ``scripts/bench_congestion.py --no-fast-remb``): by then a
one-second queue is full, and the voice waits behind it. Where the call negotiated
transport-wide sequence numbers (:func:`.twcc.add_transport_cc`; every browser offers
them) the browser instead reports when each packet arrived, every 62-79 ms (Chromium), and
sends no REMB for the streams it reports. :class:`TransportFeedbackMonitor` numbers the
packets as they leave the call's DTLS transport, counts every byte that leaves, and reads
the feedback:

- the video's packets feed the estimator the REMB would have come from, here on the sender:
  :class:`media.congestion.fast_remb.FastRemoteBitrateEstimator` (aiortc's port of the browser's
  receive-side estimator, with the bot's early detectors of a filling queue); its estimates
  reach the quality loop as REMBs (``on_remb``);
- each voice packet's one-way delay (arrival minus send time, any offset) is the queue it
  met; while that queue stays busy, everything sent between two voice packets left the
  bottleneck between their arrivals, so those bytes over that time *is* the link's rate
  (:class:`BusyQueueDetector`; a slowly growing queue: ``media.congestion.fast_remb``'s growth
  detector). A rate under ``drop_ratio`` of what we send goes to ``on_estimate``.

Apart from wrapping the transport's outgoing RTP and incoming RTCP
(:mod:`media.aiortc_hooks`; :meth:`TransportFeedbackMonitor.close` gives them back) this is
bookkeeping on the times given.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtp import is_rtcp

from media.aiortc_hooks import swap_handle_rtcp_data, swap_send_rtp
from media.congestion.fast_remb import (
    FastRemoteBitrateEstimator,
    QueueGrowthDetector,
    QueueGrowthOptions,
    SlidingMin,
)
from media.congestion.twcc import feedback_fcis, parse_feedback, payload_size, stamp_sequence

__all__ = [
    "BusyQueueDetector",
    "BusyQueueOptions",
    "TransportFeedbackMonitor",
    "TwccOptions",
    "TwccStats",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class BusyQueueOptions:
    floor_window_ms: float = 2000.0  # the delay floor: the lowest of this long
    min_busy_ms: float = 15.0  # a sample this far over the floor met a queue
    min_queue_ms: float = 80.0  # the newest sample's queue, to look at all
    min_rise_ms: float = 50.0  # the queue grew this much over the busy run
    min_samples: int = 3  # the busy run has this many samples or more
    max_span_ms: float = 600.0  # of send time, looked back over
    min_arrival_span_ms: float = 30.0
    backoff: float = 0.85  # the estimate is this share of the link's rate

    def __post_init__(self) -> None:
        if self.min_samples < 2 or self.min_busy_ms <= 0 or self.min_queue_ms < self.min_busy_ms:
            raise ValueError("need min_samples >= 2 and 0 < min_busy_ms <= min_queue_ms")
        if not 0 < self.backoff <= 1:
            raise ValueError(f"backoff must be within (0, 1], got {self.backoff}")


@dataclass(frozen=True, slots=True)
class _Sample:
    send_ms: float
    arrival_ms: float
    queue_ms: float
    size: int  # bytes that left us since the sample before, this one's packet included


class BusyQueueDetector:
    """A bottleneck queue in sparse samples (the voice, every 20 ms) that each carry the
    bytes sent since the one before. Pure: times are inputs.

    While a FIFO queue stays busy, the bytes sent between two samples leave it between
    their arrivals: over a run of samples that all waited (``min_busy_ms`` over the delay
    floor) and whose queue grew by ``min_rise_ms`` to at least ``min_queue_ms``, those
    bytes over that arrival time are the link's rate; the estimate is ``backoff`` times it.
    A delay step or a receiver's stall leaves the rate at what was sent (no news);
    a real bottleneck shows a rate under it (the monitor's ``drop_ratio`` decides).
    """

    def __init__(self, options: BusyQueueOptions | None = None) -> None:
        self.options = options or BusyQueueOptions()
        self._samples: deque[_Sample] = deque()
        self._floor = SlidingMin(self.options.floor_window_ms)

    def observe(self, *, arrival_ms: float, send_ms: float, size: int) -> int | None:
        o, h = self.options, self._samples
        delay = arrival_ms - send_ms
        queue = delay - self._floor.add(send_ms, delay)
        h.append(_Sample(send_ms, arrival_ms, queue, size))
        while h[0].send_ms < send_ms - o.max_span_ms:
            h.popleft()
        if queue < o.min_queue_ms:
            return None
        run = 1  # the busy run that ends with this sample
        while run < len(h) and h[-run - 1].queue_ms >= o.min_busy_ms:
            run += 1
        if run < o.min_samples:
            return None
        first, last = h[-run], h[-1]
        if last.queue_ms - first.queue_ms < o.min_rise_ms:
            return None
        span = last.arrival_ms - first.arrival_ms
        if span < o.min_arrival_span_ms:
            return None
        sent = sum(h[k].size for k in range(len(h) - run + 1, len(h)))
        return round(o.backoff * sent * 8 * 1000 / span)


@dataclass(frozen=True, slots=True, kw_only=True)
class TwccOptions:
    busy: BusyQueueOptions = field(default_factory=BusyQueueOptions)
    growth: QueueGrowthOptions = field(default_factory=QueueGrowthOptions)
    drop_ratio: float = 0.7  # a queue's rate under this share of what we send is news
    hold_s: float = 0.5  # after a signal, another one only if lower (or after this long)
    rate_window_s: float = 1.0  # what we send: over this long
    history: int = 4096  # numbered packets remembered (~80 s of voice)

    def __post_init__(self) -> None:
        if not 0 < self.drop_ratio < 1:
            raise ValueError(f"drop_ratio must be within (0, 1), got {self.drop_ratio}")
        if self.hold_s < 0 or self.rate_window_s <= 0 or self.history < 16:
            raise ValueError("hold_s >= 0, rate_window_s > 0 and history >= 16 are needed")


@dataclass(slots=True)
class TwccStats:
    numbered: int = 0  # packets that left with a transport-wide sequence number
    feedbacks: int = 0  # feedback messages read
    reported: int = 0  # packets they said arrived
    malformed: int = 0  # feedback messages that could not be read
    signals: int = 0  # queues seen (the voice's estimates, the estimator's early REMBs)
    rembs: int = 0  # REMBs the video's estimator gave (numbered video only)
    remb_trace: deque[tuple[float, int, bool]] = field(default_factory=lambda: deque(maxlen=256))
    last_queue_s: float = 0.0  # the newest reported packet's delay over the last 10 s' lowest
    first_feedback_at: float | None = None
    last_feedback_at: float | None = None
    signal_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))  # newest


_FLOOR_WINDOW_MS = 10_000.0
_Send = Callable[[bytes], Awaitable[None]]
_Handle = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Sent:
    at: float  # send time (s)
    total: int  # bytes sent up to and with this packet
    payload: int  # its payload bytes (REMB's unit)
    ssrc: int


class TransportFeedbackMonitor:
    """Numbers the packets of the SSRCs in ``ext_ids`` (SSRC -> extension id) on
    ``transport`` (an ``RTCDtlsTransport``) and reads the transport feedback about them.

    ``voice_ssrc``'s packets feed :class:`BusyQueueDetector` and the slow-growth detector;
    their estimates go to ``on_estimate``. Where the video is numbered too
    (``video_ssrcs``) a browser sends no REMB for it, so its packets feed the estimator a
    REMB comes from (:class:`media.congestion.fast_remb.FastRemoteBitrateEstimator`) here on the
    sender, whose REMBs go to ``on_remb``.
    """

    def __init__(
        self,
        transport: Any,
        ext_ids: Mapping[int, int],
        *,
        voice_ssrc: int | None = None,
        video_ssrcs: frozenset[int] = frozenset(),
        on_estimate: Callable[[float], None] | None = None,
        on_remb: Callable[[float], None] | None = None,
        options: TwccOptions | None = None,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or TwccOptions()
        self.stats = TwccStats()
        self._transport, self._ext_ids = transport, dict(ext_ids)
        self._voice, self._video = voice_ssrc, video_ssrcs & self._ext_ids.keys()
        self._on_estimate, self._on_remb = on_estimate, on_remb
        self._time = time_fn
        self._seq = 0
        self._sent_bytes = 0
        self._sent: OrderedDict[int, _Sent] = OrderedDict()  # by 16-bit sequence number
        self._rates: deque[tuple[float, int]] = deque()  # (time, bytes sent): our rate
        self._last_voice: _Sent | None = None  # the newest voice packet reported
        self._newest_at = -math.inf  # send time of the newest packet reported
        # the gauge's floor: a window, so a longer route does not read as a queue for good
        self._floor = SlidingMin(_FLOOR_WINDOW_MS)
        self._busy = BusyQueueDetector(self.options.busy)
        self._growth = QueueGrowthDetector(self.options.growth)
        self.estimator: FastRemoteBitrateEstimator | None = None
        if self._video:
            self.estimator = FastRemoteBitrateEstimator(on_remb=self._remb_seen)
        self._signal: tuple[float, float] | None = None  # (at, bps)
        self._swaps = (
            swap_send_rtp(transport, self._sending),
            swap_handle_rtcp_data(transport, self._received),
        )
        self._send: _Send = self._swaps[0].inner
        self._handle: _Handle = self._swaps[1].inner

    def close(self) -> None:
        for swap in self._swaps:
            swap.restore()

    @property
    def feedback_interval_s(self) -> float | None:
        """The receiver's mean interval between two feedback messages so far."""
        s = self.stats
        if s.feedbacks < 2 or s.first_feedback_at is None or s.last_feedback_at is None:
            return None
        return (s.last_feedback_at - s.first_feedback_at) / (s.feedbacks - 1)

    def send_bps(self, now: float) -> float | None:
        """What left the transport over the last ``rate_window_s`` (None: too little yet)."""
        q = self._rates
        while len(q) > 2 and q[1][0] <= now - self.options.rate_window_s:
            q.popleft()
        if len(q) < 2 or q[-1][0] - q[0][0] < 0.2:
            return None
        return (q[-1][1] - q[0][1]) * 8 / (q[-1][0] - q[0][0])

    # ---- the wrapped transport ---------------------------------------------------------
    async def _sending(self, data: bytes) -> None:
        now = self._time()
        ssrc = int.from_bytes(data[8:12]) if len(data) >= 12 and not is_rtcp(data) else None
        ext_id = self._ext_ids.get(ssrc) if ssrc is not None else None
        stamped = None
        if ssrc is not None and ext_id is not None:
            stamped = stamp_sequence(data, ext_id, self._seq)
        if stamped is None:
            self._sent_bytes += len(data)
            await self._send(data)
            return
        assert ssrc is not None
        self._sent_bytes += len(stamped)
        self._sent[self._seq] = _Sent(now, self._sent_bytes, payload_size(stamped), ssrc)
        self._seq = (self._seq + 1) & 0xFFFF
        self.stats.numbered += 1
        while len(self._sent) > self.options.history:
            self._sent.popitem(last=False)
        if len(self._rates) < 2 or now - self._rates[-1][0] >= 0.01:
            self._rates.append((now, self._sent_bytes))
        await self._send(stamped)

    async def _received(self, data: bytes) -> None:
        for fci in feedback_fcis(data):
            try:
                self.read(fci)
            except ValueError as exc:
                self.stats.malformed += 1
                log.debug("transport feedback skipped: %s", exc)
        await self._handle(data)

    # ---- the feedback ------------------------------------------------------------------
    def read(self, fci: bytes) -> float | None:
        """Read one feedback FCI; the voice's estimate it led to (also given to
        ``on_estimate``; the video estimator's REMBs go to ``on_remb``)."""
        feedback = parse_feedback(fci)
        now = self._time()
        s = self.stats
        s.feedbacks += 1
        if s.first_feedback_at is None:
            s.first_feedback_at = now
        s.last_feedback_at = now
        signal: float | None = None
        for seq, arrival_us in feedback.arrivals:
            sent = self._sent.get(seq)
            if arrival_us is None or sent is None:
                continue
            s.reported += 1
            if sent.at < self._newest_at - 1.0:
                continue  # a sequence number reused since (the history wrapped)
            self._newest_at = max(self._newest_at, sent.at)
            arrival_ms, send_ms = arrival_us / 1000, sent.at * 1000
            delay = arrival_ms - send_ms
            s.last_queue_s = max(0.0, delay - self._floor.add(send_ms, delay)) / 1000
            if sent.ssrc in self._video and self.estimator is not None:
                abs_send = round(sent.at * (1 << 18)) & 0xFFFFFF
                self.estimator.add(round(arrival_ms), abs_send, sent.payload, sent.ssrc)
            if sent.ssrc != self._voice:
                continue
            last, self._last_voice = self._last_voice, sent
            if last is None or sent.at <= last.at:
                continue  # the first one, or old news (a feedback repeated)
            size = sent.total - last.total  # everything that left since the last voice packet
            sudden = self._busy.observe(arrival_ms=arrival_ms, send_ms=send_ms, size=size)
            growing = self._growth.observe(arrival_ms=arrival_ms, send_ms=send_ms, size=size)
            for bps in (sudden, growing):
                if bps is not None and self._news(now, bps):
                    signal = bps if signal is None else min(signal, bps)
        if signal is not None:
            self._signal = (now, signal)
            self._signalled(now)
            if self._on_estimate is not None:
                self._on_estimate(signal)
        return signal

    def _remb_seen(self, _arrival_ms: int, bps: int, fast: bool) -> None:
        self.stats.rembs += 1
        self.stats.remb_trace.append((self._time(), bps, fast))
        if fast:
            self._signalled(self._time())
        if self._on_remb is not None:
            self._on_remb(float(bps))

    def _signalled(self, now: float) -> None:
        s = self.stats
        s.signals += 1
        s.signal_times.append(now)

    def _news(self, now: float, bps: float) -> bool:
        """Is this estimate worth acting on: well under what we send, and under the last
        signal while that still holds?"""
        sending = self.send_bps(now)
        if sending is None or bps >= self.options.drop_ratio * sending:
            return False
        if self._signal is not None and now - self._signal[0] < self.options.hold_s:
            return bps < self._signal[1]
        return True
