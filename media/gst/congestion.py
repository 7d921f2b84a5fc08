"""The outputs' send-side signals drive the calls' :class:`QualityController`.

SRT reports round-trip time, packets lost and retransmitted and the send rate
(``srtsink``'s ``stats``); RTMP reports the bytes written and the bytes the server
acknowledged (``rtmp2sink``'s ``stats``), whose difference is the send backlog. A
:class:`StreamQuality` polls those every ``period_s``, notes them on the controller and
applies what it decides: the encoder's bitrate (a live change, no keyframe) every tick, and
the rung (a smaller size or frame rate, through the ``rung`` capsfilter; the encoder
restarts on a keyframe) only when the controller steps, which its hold times keep rare.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from media.congestion.controller import QualityController
from media.congestion.ladder import QualityOptions, Rung
from media.gst.source import FPS_CHOICES

_BASE_S = 10.0  # window of the lowest unsent byte count (the RTMP backlog's zero)

__all__ = ["SendStats", "StreamQuality", "parse_rtmp_stats", "parse_srt_stats", "stream_ladder"]


@dataclass(frozen=True, slots=True)
class SendStats:
    """Cumulative counters of one sink at one moment."""

    bytes_sent: int
    packets_sent: int = 0
    packets_lost: int = 0
    rtt_s: float | None = None
    backlog_bytes: int | None = None  # written but not yet acknowledged


def _field(s: Any, name: str, default: float = 0.0) -> float:
    value = s.get_value(name) if s.has_field(name) else None
    return default if value is None else float(value)


def parse_srt_stats(s: Any) -> SendStats:
    """``srtsink``'s ``stats`` structure (a caller's own fields, GStreamer 1.22)."""
    return SendStats(
        bytes_sent=int(_field(s, "bytes-sent-total", _field(s, "bytes-sent"))),
        packets_sent=int(_field(s, "packets-sent")),
        packets_lost=int(_field(s, "packets-sent-lost")) + int(_field(s, "packets-sent-dropped")),
        rtt_s=_field(s, "rtt-ms") / 1000.0 if s.has_field("rtt-ms") else None,
    )


def parse_rtmp_stats(s: Any) -> SendStats:
    """``rtmp2sink``'s ``stats`` structure: bytes written, and the bytes the server is
    behind beyond its acknowledgement window (it acknowledges once per window, 2.5-5 MB
    with common servers, so only a deep backlog shows here)."""
    total, acked = int(_field(s, "out-bytes-total")), int(_field(s, "out-bytes-acked"))
    window = int(_field(s, "out-window-ack-size"))
    return SendStats(bytes_sent=total, backlog_bytes=max(0, total - acked - window))


def stream_ladder(height: int, fps: int, bitrate: int) -> tuple[Rung, ...]:
    """A ladder that starts at the stream's own size, rate and bitrate and goes down in
    three steps to 3/8 of the height, 60 % of the frame rate and 15 % of the bitrate."""

    def even(x: float) -> int:
        return max(16, int(x) // 2 * 2)

    def rate(limit: float) -> int:
        return max([f for f in FPS_CHOICES if f <= limit] or [FPS_CHOICES[0]])

    steps = ((1.0, 1.0, 1.0), (0.75, 1.0, 0.55), (0.5, 0.8, 0.3), (0.375, 0.6, 0.15))
    return tuple(
        Rung(
            height=even(height * h),
            fps=min(fps, rate(fps * f)),
            bitrate=max(10_000, int(bitrate * b)),
        )
        for h, f, b in steps
    )


class StreamQuality:
    """Polls one sink's stats, decides with the controller, applies to the encoder."""

    def __init__(
        self,
        *,
        kind: str,
        sink: Any,
        encoder: Any,
        rung_filter: Any,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        options: QualityOptions | None = None,
        fed: Callable[[], int] | None = None,
    ) -> None:
        """``fed`` counts the bytes handed to the sink: for RTMP, those it has not written
        to its socket yet (a queue that grew within the last ``_BASE_S``) are a backlog."""
        if kind not in ("srt", "rtmp"):
            raise ValueError(f"congestion signals come from srt and rtmp sinks, not {kind!r}")
        self.kind = kind
        self._sink, self._encoder, self._filter = sink, encoder, rung_filter
        self._fed = fed
        self._unsent: deque[tuple[float, int]] = deque()  # (time, fed - written)
        self._aspect = width / height
        self.controller = QualityController(
            options or QualityOptions(ladder=stream_ladder(height, fps, bitrate))
        )
        self._last: tuple[float, SendStats] | None = None
        self.applied_bitrate = bitrate
        self.rung_changes = 0

    def stats(self, now: float | None = None) -> SendStats:
        s = self._sink.get_property("stats")
        if self.kind == "srt":
            return parse_srt_stats(s)
        stats = parse_rtmp_stats(s)
        if self._fed is None or now is None:
            return stats
        # fed - written drifts slowly (FLV tags become RTMP chunks): its rise above the
        # lowest value of the last _BASE_S is the queue that built up since
        self._unsent.append((now, self._fed() - stats.bytes_sent))
        while self._unsent and self._unsent[0][0] < now - _BASE_S:
            self._unsent.popleft()
        queued = self._unsent[-1][1] - min(u for _, u in self._unsent)
        return replace(stats, backlog_bytes=max(queued, stats.backlog_bytes or 0))

    def poll(self, now: float) -> Rung | None:
        """Read the sink and :meth:`step`."""
        return self.step(now, self.stats(now))

    def step(self, now: float, stats: SendStats) -> Rung | None:
        """Note ``stats``, tick, apply; returns the new rung when it changed."""
        self.note(now, stats)
        rung = self.controller.tick(now)
        if rung is not None:
            self._apply_rung(rung)
        self._apply_bitrate(self.controller.bitrate)
        return rung

    def note(self, now: float, stats: SendStats) -> None:
        """Turn two successive counter readings into the controller's measurements."""
        c = self.controller
        if stats.rtt_s is not None and stats.rtt_s > 0:
            c.on_rtt(stats.rtt_s)
        last, self._last = self._last, (now, stats)
        if last is None or now <= last[0]:
            return
        dt = now - last[0]
        prev = last[1]
        sent_bps = max(0, stats.bytes_sent - prev.bytes_sent) * 8 / dt
        c.on_sent(sent_bps)
        packets = stats.packets_sent - prev.packets_sent
        if packets > 0:
            c.on_loss(min(1.0, max(0, stats.packets_lost - prev.packets_lost) / packets))
        if stats.backlog_bytes is not None:
            rate = max(sent_bps, 0.25 * c.bitrate, 1.0)
            c.on_send_queue(stats.backlog_bytes * 8 / rate)

    def _apply_bitrate(self, bps: int) -> None:
        if abs(bps - self.applied_bitrate) < 0.05 * self.applied_bitrate:
            return  # small changes are noise: leave the encoder alone
        name = self._encoder.get_factory().get_name()
        if name == "vp8enc":
            self._encoder.set_property("target-bitrate", int(bps))
        else:  # x264enc, nvh264enc: kbit/s, changed live without a keyframe
            self._encoder.set_property("bitrate", max(1, int(bps) // 1000))
        self.applied_bitrate = bps

    def _apply_rung(self, rung: Rung) -> None:
        from media.gst.runtime import gst

        width = max(16, round(rung.height * self._aspect) // 2 * 2)
        caps = gst().Caps.from_string(
            f"video/x-raw,format=I420,width={width},height={rung.height},framerate={rung.fps}/1"
        )
        self._filter.set_property("caps", caps)
        self.rung_changes += 1
