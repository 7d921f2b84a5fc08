"""A send pacer for one video sender: frames leave as a stream, not as bursts.

aiortc hands every packet of an encoded frame to the transport at once. Through a
bottleneck that burst becomes a queue, and the audio packets sent meanwhile wait behind it:
a 20 kB keyframe (a rung change, a PLI) on a 400 kbps link holds the audio back for 0.4 s,
which a listener hears as a gap. :class:`VideoPacer` wraps the call's DTLS transport's
RTP send (:func:`media.aiortc_hooks.swap_send_rtp`) and sends the video sender's packets
(its SSRC and its RTX SSRC) from a queue at ``factor`` x the video bitrate; audio and RTCP
pass at once, ahead of any video waiting, and retransmissions go to the front of the queue
(a frame waits for them). The queue never holds more than ``max_queue_s`` of video: past
that it is sent faster. Each packet's abs-send-time is stamped again as it leaves, so the
receiver's delay-based estimator sees the network's queue, not ours.
:meth:`flush` drops what waits (the sender is draining a bottleneck queue: those frames
are stale, the encoder sends a keyframe after the pause).

While ``saturated()`` says the link is known to be full (a bottleneck was seen and the
link has not shown more since), the video leaves at ``saturated_factor`` x its bitrate
instead. At ``factor`` a frame goes out in a short burst, and on a saturated link a
voice packet that follows it waits behind the whole frame: a 5 kB frame is 100 ms on a
400 kbps link, a gap the listener hears. Spread over its frame interval, a frame keeps
the voice packets interleaved; a bigger frame (a keyframe) waits here, where the voice
passes it, and not in the network's queue, where it cannot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import clock
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket, is_rtcp

from media.aiortc_hooks import sender_header_extensions, sender_rtx_ssrc, sender_ssrc, swap_send_rtp

__all__ = ["PacerStats", "VideoPacer"]

log = logging.getLogger(__name__)

_Send = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class PacerStats:
    sent: int = 0
    flushed: int = 0
    max_queue_s: float = 0.0  # the longest a packet waited


class VideoPacer:
    """Paces ``sender``'s RTP at ``factor`` x ``bitrate()`` bps (``saturated_factor`` x while
    ``saturated()``); :meth:`close` undoes it."""

    def __init__(
        self,
        sender: RTCRtpSender,
        bitrate: Callable[[], float],
        *,
        factor: float = 2.5,
        max_queue_s: float = 0.3,
        burst_s: float = 0.005,
        saturated: Callable[[], bool] | None = None,
        saturated_factor: float = 1.5,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if sender.kind != "video":
            raise ValueError(f"the pacer is for video senders, not {sender.kind!r}")
        if factor < 1 or saturated_factor < 1 or max_queue_s <= 0 or burst_s < 0:
            raise ValueError(
                "need factor >= 1, saturated_factor >= 1, max_queue_s > 0 and burst_s >= 0"
            )
        self.factor, self.max_queue_s, self.burst_s = factor, max_queue_s, burst_s
        self.saturated_factor = saturated_factor
        self._saturated = saturated
        self._bitrate = bitrate
        self._time = time_fn
        self._sender = sender
        self._transport = sender.transport
        self._rtx_ssrc = sender_rtx_ssrc(sender)
        self._ssrcs = {sender_ssrc(sender), self._rtx_ssrc}
        self._newest: int | None = None  # the newest media sequence number queued
        self._extensions = sender_header_extensions(sender)
        # (queued at, packet): retransmissions leave before new media (a frame waits for them)
        self._repairs: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._next_at = 0.0  # when the next packet may leave
        self.stats = PacerStats()
        self._swap = swap_send_rtp(self._transport, self._send)
        self._inner: _Send = self._swap.inner
        self._task = asyncio.ensure_future(self._run())

    @property
    def queue_s(self) -> float:
        """How long the oldest waiting packet has waited."""
        heads = [q[0][0] for q in (self._repairs, self._queue) if q]
        return self._time() - min(heads) if heads else 0.0

    def flush(self) -> int:
        """Drop every waiting packet; returns how many."""
        n = len(self._queue) + len(self._repairs)
        self._queue.clear()
        self._repairs.clear()
        self._queued_bytes = 0
        self.stats.flushed += n
        return n

    async def close(self) -> None:
        """Stop pacing: what waits is sent at once and the transport is given back."""
        self._swap.restore()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for queue in (self._repairs, self._queue):
            while queue:
                with contextlib.suppress(ConnectionError):
                    await self._inner(queue.popleft()[1])
        self._queued_bytes = 0

    async def _send(self, data: bytes) -> None:
        if is_rtcp(data) or len(data) < 12 or int.from_bytes(data[8:12]) not in self._ssrcs:
            await self._inner(data)  # audio and RTCP do not wait
            return
        if self._task.done():  # the transport closed under us: let the sender see it
            await self._inner(data)
            return
        entry = (self._time(), data)
        if self._resent(data):
            self._repairs.append(entry)
        else:
            self._queue.append(entry)
            self._newest = int.from_bytes(data[2:4])
        self._queued_bytes += len(data)
        self._wake.set()

    def _resent(self, data: bytes) -> bool:
        """A retransmission: on the RTX SSRC, or an older sequence number on the media one."""
        if int.from_bytes(data[8:12]) == self._rtx_ssrc:
            return True
        if self._newest is None:
            return False
        return 0 < (self._newest - int.from_bytes(data[2:4])) % 65536 < 32768

    def _rate(self) -> float:
        """Bits per second now: the paced rate, or faster if the queue is too long."""
        full = self._saturated is not None and self._saturated()
        paced = (self.saturated_factor if full else self.factor) * max(1.0, self._bitrate())
        # what waits must be gone before the oldest of it has waited max_queue_s
        left = max(0.01, self.max_queue_s - self.queue_s)
        return max(paced, self._queued_bytes * 8 / left)

    def _restamp(self, data: bytes) -> bytes:
        try:
            packet = RtpPacket.parse(data, self._extensions)
        except ValueError:
            return data
        if packet.extensions.abs_send_time is None:
            return data
        packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        return packet.serialize(self._extensions)

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._repairs:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._time()
            # a packet may leave a little early (a burst of burst_s): sleeps are coarse
            if self._next_at - now > self.burst_s:
                await asyncio.sleep(self._next_at - now - self.burst_s)
                continue
            queued_at, data = (self._repairs or self._queue).popleft()
            self._queued_bytes -= len(data)
            self.stats.max_queue_s = max(self.stats.max_queue_s, now - queued_at)
            try:
                await self._inner(self._restamp(data))
            except ConnectionError:
                self.flush()
                return
            self.stats.sent += 1
            self._next_at = max(self._next_at, now - self.burst_s) + len(data) * 8 / self._rate()
