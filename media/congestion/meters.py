"""Rates a call's quality loop measures on its own side, from counters sampled over time.

Each meter is pure: it takes the time (``now``) and a counter's current value, keeps the
samples of its window and returns a rate. :class:`ByteRate` gives what a sender sent,
:class:`RenderLag` how far behind the video track's renderer falls, :class:`RepairedShare`
the share of packets the receiver NACKed (loss that retransmission repaired).
"""

from __future__ import annotations

from collections import deque

__all__ = ["ByteRate", "RenderLag", "RepairedShare"]


class ByteRate:
    """Bits per second of a growing byte counter over the last ``window_s``; None until
    the samples span ``min_span_s``."""

    def __init__(self, window_s: float, min_span_s: float) -> None:
        self._window_s, self._min_span_s = window_s, min_span_s
        self._samples: deque[tuple[float, int]] = deque()

    def bps(self, now: float, total_bytes: int) -> float | None:
        self._samples.append((now, total_bytes))
        while self._samples[0][0] < now - self._window_s:
            self._samples.popleft()
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) * 8 / (t1 - t0) if t1 - t0 >= self._min_span_s else None


class RenderLag:
    """Seconds of video ticks dropped per second over the last ``window_s``; 0 until the
    samples span most of the window, over at least ``min_span_s``."""

    def __init__(self, window_s: float, min_span_s: float) -> None:
        self._window_s, self._min_span_s = window_s, min_span_s
        self._drops: deque[tuple[float, int]] = deque()

    def lag(self, now: float, frames_dropped: int, fps: float) -> float:
        self._drops.append((now, frames_dropped))
        while self._drops and self._drops[0][0] < now - self._window_s:
            self._drops.popleft()
        (t0, d0), (t1, d1) = self._drops[0], self._drops[-1]
        if t1 - t0 < 0.8 * self._window_s:
            return 0.0  # not a full window yet (the call's first second stalls anyway)
        return (d1 - d0) / fps / max(t1 - t0, self._min_span_s)


class RepairedShare:
    """Share of packets NACKed over the last ``window_s``, the packets estimated from the
    bytes sent (``packet_bytes`` each); None until some were sent."""

    def __init__(self, window_s: float = 2.0, packet_bytes: float = 1100) -> None:
        self._window_s, self._packet_bytes = window_s, packet_bytes
        self._nacks: deque[tuple[float, int, int]] = deque()  # (time, nacked, bytes sent)

    def share(self, now: float, nacked: int, total_bytes: int) -> float | None:
        """``nacked``: packets NACKed since the last call; ``total_bytes``: sent so far."""
        self._nacks.append((now, nacked, total_bytes))
        while self._nacks and self._nacks[0][0] < now - self._window_s:
            self._nacks.popleft()
        sent = self._nacks[-1][2] - self._nacks[0][2]
        if sent <= 0:
            return None
        nacked_total = sum(n for _, n, _ in self._nacks)
        return min(1.0, nacked_total / max(1.0, sent / self._packet_bytes))
