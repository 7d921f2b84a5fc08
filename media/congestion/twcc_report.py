"""A receiver's transport feedback, as a browser sends it, for aiortc peers (the bot).

aiortc neither numbers its packets transport-wide nor answers with transport feedback.
:class:`TransportFeedbackReporter` gives one aiortc peer the receiving half: it notes when
each packet numbered with one of ``ext_ids`` arrives (wrapping the DTLS transport's
incoming RTP, :func:`media.aiortc_hooks.swap_handle_rtp_data`) and every ``interval_s`` sends
one RTCP transport feedback (:func:`media.congestion.twcc.build_feedback`) for what arrived
since the last one, the packets that never came marked lost. Chrome sends it every
50-250 ms by its bitrate; 100 ms is its default and ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from media.aiortc_hooks import (
    receiver_remb_estimator,
    send_rtp,
    set_receiver_remb_estimator,
    swap_handle_rtp_data,
)
from media.congestion.fast_remb import FastRemoteBitrateEstimator, RembObserver
from media.congestion.twcc import build_feedback, negotiated_id, read_sequence

__all__ = ["TransportFeedbackReporter", "install_transport_feedback", "stop_remb"]

log = logging.getLogger(__name__)

_MAX_SPAN = 1000  # sequence numbers one feedback may cover


class TransportFeedbackReporter:
    """Transport feedback about packets numbered with one of ``ext_ids`` that arrive on
    ``transport``."""

    def __init__(
        self,
        transport: Any,
        ext_ids: frozenset[int],
        *,
        interval_s: float = 0.1,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if not ext_ids:
            raise ValueError("no extension id to read")
        self._transport, self._ext_ids, self.interval_s = transport, ext_ids, interval_s
        self._time = time_fn
        self._t0 = time_fn()  # arrival times count from here (the 24-bit reference time)
        self._ssrc = random.getrandbits(32)
        self._media_ssrc = 0
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival µs
        self._newest: int | None = None  # unwrapped
        self._next: int | None = None  # the first sequence number the next feedback covers
        self._count = 0
        self.sent = 0  # feedback messages sent
        self._swap = swap_handle_rtp_data(transport, self._arrived)
        self._handle = self._swap.inner
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._swap.restore()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _arrived(self, data: bytes, arrival_time_ms: int) -> None:
        seq = None
        for ext_id in self._ext_ids:  # one id, or one per kind of media
            if (seq := read_sequence(data, ext_id)) is not None:
                break
        if seq is not None:
            self._note(seq, round((self._time() - self._t0) * 1e6))
            self._media_ssrc = int.from_bytes(data[8:12])
        await self._handle(data, arrival_time_ms)

    def _note(self, seq: int, at_us: int) -> None:
        if self._newest is None:
            full = seq
        else:  # the unwrapped number nearest the newest one
            delta = (seq - self._newest) & 0xFFFF
            full = self._newest + delta - (0x10000 if delta >= 0x8000 else 0)
        if self._next is not None and full < self._next:
            return  # reported already (lost then): too late now
        self._arrivals.setdefault(full, at_us)
        if self._newest is None or full > self._newest:
            self._newest = full
        if self._next is None:
            self._next = full

    def feedback(self) -> bytes | None:
        """The feedback for what arrived since the last one (None: nothing arrived)."""
        if self._next is None or self._newest is None or not self._arrivals:
            return None
        first = max(self._next, self._newest - _MAX_SPAN + 1)
        arrivals = [(n & 0xFFFF, self._arrivals.get(n)) for n in range(first, self._newest + 1)]
        self._arrivals = {n: a for n, a in self._arrivals.items() if n > self._newest}
        self._next = self._newest + 1
        if all(a is None for _, a in arrivals):
            return None
        packet = build_feedback(
            sender_ssrc=self._ssrc,
            media_ssrc=self._media_ssrc,
            fb_count=self._count,
            arrivals=arrivals,
        )
        self._count = (self._count + 1) & 0xFF
        return packet

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            packet = self.feedback()
            if packet is None:
                continue
            try:
                await send_rtp(self._transport, packet)
            except ConnectionError:
                return
            self.sent += 1


def install_transport_feedback(
    pc: Any, *, interval_s: float = 0.1
) -> TransportFeedbackReporter | None:
    """Answer transport feedback on ``pc`` (an aiortc peer, its descriptions set) for the
    kinds of media both descriptions negotiated it on; None where they did not."""
    ids = {negotiated_id(pc, kind) for kind in ("audio", "video")} - {None}
    transceivers = pc.getTransceivers()
    if not ids or not transceivers or transceivers[0].receiver.transport is None:
        return None
    found = frozenset(i for i in ids if i is not None)
    return TransportFeedbackReporter(
        transceivers[0].receiver.transport, found, interval_s=interval_s
    )


class _NoRemb(FastRemoteBitrateEstimator):
    """What a browser does for a stream it sends transport feedback about: no REMB (this
    one still estimates, for a benchmark to compare with the sender's)."""

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        super().add(arrival_time_ms, abs_send_time, payload_size, ssrc)
        return None


def stop_remb(pc: Any, on_remb: RembObserver | None = None) -> int:
    """Make ``pc``'s video receivers send no REMB, as a browser does for a stream it sends
    transport feedback about (tests and benchmarks playing a browser; ``on_remb`` sees
    what would have been sent); how many."""
    count = 0
    for tr in pc.getTransceivers():
        if tr.kind == "video" and receiver_remb_estimator(tr.receiver) is not None:
            set_receiver_remb_estimator(tr.receiver, _NoRemb(on_remb=on_remb))
            count += 1
    return count
