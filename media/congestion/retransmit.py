"""A budget for one video sender's retransmissions (aiortc resends every NACKed packet).

aiortc answers each NACK by resending the packet from its history, at any rate. On a
congested link that is the worst thing to do: the losses come from a full bottleneck queue,
and every retransmission goes back into that queue, keeping it full for seconds after the
sender itself has slowed down. :class:`RetransmitLimiter` gates one sender's
retransmissions (:func:`media.aiortc_hooks.wrap_retransmit`: only this sender changes) and

- lets retransmissions through a token bucket of ``share`` x the current video bitrate
  (libwebrtc limits its retransmissions to the target bitrate for the same reason);
- drops them all while the sender is draining a queue (:meth:`pause`): the frames they
  belong to are stale by then and the receiver gets a keyframe instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtcrtpsender import RTCRtpSender

from media.aiortc_hooks import wrap_retransmit

__all__ = ["RetransmitLimiter", "RetransmitStats"]

_PACKET_BYTES = 1200  # a typical video RTP packet; history packets are not sized up front


@dataclass(slots=True)
class RetransmitStats:
    sent: int = 0
    dropped_budget: int = 0
    dropped_paused: int = 0


class RetransmitLimiter:
    """Token bucket for one sender's retransmissions; ``bitrate`` gives the current rate."""

    def __init__(
        self,
        sender: RTCRtpSender,
        bitrate: Callable[[], float],
        *,
        share: float = 0.3,
        burst_s: float = 0.2,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        if burst_s <= 0:
            raise ValueError(f"burst_s must be positive, got {burst_s}")
        if sender.kind != "video":
            raise ValueError(f"retransmission limits are for video senders, not {sender.kind!r}")
        self._bitrate = bitrate
        self.share = share
        self.burst_s = burst_s
        self._time = time_fn
        self._tokens = self._capacity()
        self._last = time_fn()
        self._paused_until = 0.0
        self.stats = RetransmitStats()
        wrap_retransmit(sender, self.allow)

    def _capacity(self) -> float:
        return max(2 * _PACKET_BYTES, self._bitrate() / 8 * self.share * self.burst_s)

    def pause(self, seconds: float) -> None:
        """Drop every retransmission for ``seconds`` (the sender is draining a queue)."""
        if not 0 <= seconds <= 5:
            raise ValueError(f"pause must be within 0..5 s, got {seconds}")
        self._paused_until = max(self._paused_until, self._time() + seconds)
        self._tokens = 0.0

    def resume(self) -> None:
        """End a pause early (the queue is gone)."""
        self._paused_until = min(self._paused_until, self._time())

    def allow(self) -> bool:
        """Whether one retransmission may go now (and spend its tokens if so)."""
        now = self._time()
        if now < self._paused_until:
            self.stats.dropped_paused += 1
            return False
        rate = self._bitrate() / 8 * self.share
        self._tokens = min(self._capacity(), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < _PACKET_BYTES:
            self.stats.dropped_budget += 1
            return False
        self._tokens -= _PACKET_BYTES
        self.stats.sent += 1
        return True
