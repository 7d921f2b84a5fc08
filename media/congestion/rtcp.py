"""The RTCP that reaches one call's video sender, read for the quality controller.

:class:`RtcpMonitor` sees the RTCP one sender receives and sends
(:func:`media.aiortc_hooks.wrap_sender_rtcp`: only this sender is affected, aiortc still
handles every packet): receiver
reports give fraction lost (over at least ``LOSS_WINDOW_S``, however often they come),
jitter, RTT (from our own sender-report send times) and the rate that reached the receiver
between two reports, NACKs
the repaired loss, REMB packets the receiver's estimate; :meth:`RtcpMonitor.estimate` takes
the sender's own (:mod:`media.congestion.twcc_monitor`) the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from media.aiortc_hooks import sender_counts, sender_ssrc, wrap_sender_rtcp

__all__ = ["LOSS_WINDOW_S", "RtcpMonitor", "RtcpSnapshot"]

LOSS_WINDOW_S = 0.5  # the loss the controller gets is measured over at least this long


@dataclass(frozen=True, slots=True)
class RtcpSnapshot:
    """What arrived since the last :meth:`RtcpMonitor.take` (None = nothing new)."""

    remb_bps: float | None = None
    fraction_lost: float | None = None
    jitter_s: float | None = None
    rtt_s: float | None = None
    reports: int = 0
    nacked: int = 0  # packets the receiver asked to be sent again (repaired loss)
    delivered_bps: float | None = None  # what reached the receiver between its last reports
    delivered_window_s: float | None = None  # ... over this long (ending now)


class RtcpMonitor:
    """Reads the RTCP that reaches one sender: receiver reports, NACKs and REMB.

    ``clock_rate`` converts RR jitter (RTP units) to seconds. ``time_fn`` must be a clock
    that both the sender-report timestamps and the arrivals are measured on.
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        *,
        clock_rate: int = 90000,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self._sender = sender
        self._clock_rate = clock_rate
        self._time = time_fn
        self._sr_sent: dict[int, float] = {}  # middle 32 bits of the SR NTP time -> sent at
        self._pending: dict[str, float] = {}
        self._reports = 0
        self._nacked = 0
        self._last_rr: tuple[float, int] | None = None  # (arrival, packets delivered)
        # (arrival, extended highest sequence, cumulative lost) where the loss window began
        self._loss_base: tuple[float, int, int] | None = None
        self._last_sent: tuple[int, int] = (0, 0)  # the sender's (octets, packets) then
        self._cap: tuple[float, float] | None = None  # (until, bps): see estimate()
        self.last: RtcpSnapshot = RtcpSnapshot()
        # set when a receiver report or a REMB arrives: a controller can act at once
        # (aiortc's REMB follows an overuse within one packet; a poll adds its interval)
        self.news = asyncio.Event()
        wrap_sender_rtcp(sender, on_received=self.feed, on_sending=self._sending)

    def _sending(self, packets: list[Any]) -> None:
        for p in packets:
            if isinstance(p, RtcpSrPacket):
                self.sent_sr(p.sender_info.ntp_timestamp)

    def sent_sr(self, ntp_timestamp: int) -> None:
        """Note that a sender report with this 64-bit NTP timestamp left now."""
        self._sr_sent[(ntp_timestamp >> 16) & 0xFFFFFFFF] = self._time()
        while len(self._sr_sent) > 16:
            self._sr_sent.pop(next(iter(self._sr_sent)))

    def feed(self, packet: Any) -> None:
        """Read one parsed RTCP packet (others are ignored)."""
        ssrc = sender_ssrc(self._sender)
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc != ssrc:
                    continue
                self._reports += 1
                self._loss(report.fraction_lost, report.highest_sequence, report.packets_lost)
                self._pending["jitter_s"] = report.jitter / self._clock_rate
                sent = self._sr_sent.get(report.lsr)
                if report.lsr and sent is not None:
                    rtt = self._time() - sent - report.dlsr / 65536
                    self._pending["rtt_s"] = max(0.0, rtt)
                self._delivered(report.highest_sequence - report.packets_lost)
                self.news.set()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if packet.media_ssrc == ssrc:
                self._nacked += len(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if ssrc in ssrcs:
                self.remb(float(bitrate))

    def _loss(self, fraction: int, highest: int, lost: int) -> None:
        """Fraction lost over at least ``LOSS_WINDOW_S``, from the reports' cumulative counts.

        A report's own fraction covers the time since the receiver's previous report, and
        Chromium sends them at irregular times, 0.1-1 s apart and some 2 ms apart (with a
        NACK): over such an interval one lost packet of three reads as 33 % (at a 2 % random
        loss its calls went to the bottom rung). The first report's fraction is kept.
        """
        now, base = self._time(), self._loss_base
        if base is None or highest < base[1]:  # the first report, or the receiver restarted
            self._loss_base = (now, highest, lost)
            if base is None:
                self._pending["fraction_lost"] = fraction / 256
            return
        expected = highest - base[1]
        if now - base[0] < LOSS_WINDOW_S or expected == 0:
            return
        self._pending["fraction_lost"] = min(1.0, max(0, lost - base[2]) / expected)
        self._loss_base = (now, highest, lost)

    def remb(self, bps: float) -> None:
        """A REMB's estimate: one that arrived, or the sender's own from transport
        feedback, where a browser sends none (:mod:`media.congestion.twcc_monitor`)."""
        if self._cap is not None and self._time() < self._cap[0]:
            bps = min(bps, self._cap[1])
        self._pending["remb_bps"] = bps
        self.news.set()

    def estimate(self, bps: float, *, hold_s: float = 1.0) -> None:
        """A bandwidth estimate from elsewhere (the sender's own, from transport feedback),
        taken as a REMB; for ``hold_s`` the receiver's REMBs are held under it (they
        describe a second that began before the queue)."""
        self._cap = (self._time() + hold_s, bps)
        self._pending["remb_bps"] = min(bps, self._pending.get("remb_bps", bps))
        self.news.set()

    def _delivered(self, packets: int) -> None:
        """Delivered rate between two receiver reports (packets x our mean payload size)."""
        now = self._time()
        octets, count = sender_counts(self._sender)
        last, self._last_rr = self._last_rr, (now, packets)
        sent, self._last_sent = self._last_sent, (octets, count)
        if last is None or now - last[0] < 0.2 or packets < last[1]:
            return
        # the mean size of the packets sent lately (a low rung sends smaller ones)
        if count > sent[1]:
            mean = (octets - sent[0]) / (count - sent[1])
        else:
            mean = octets / count if count else 1100.0
        # payload bytes, the unit of REMB and of the encoder's rate (the controller compares
        # them: counting the headers too read ~4 % more than REMB for the same link)
        self._pending["delivered_bps"] = (packets - last[1]) * mean * 8 / (now - last[0])
        self._pending["delivered_window_s"] = now - last[0]

    def take(self) -> RtcpSnapshot:
        """The values received since the last call."""
        p = self._pending
        snap = RtcpSnapshot(
            remb_bps=p.get("remb_bps"),
            fraction_lost=p.get("fraction_lost"),
            jitter_s=p.get("jitter_s"),
            rtt_s=p.get("rtt_s"),
            reports=self._reports,
            nacked=self._nacked,
            delivered_bps=p.get("delivered_bps"),
            delivered_window_s=p.get("delivered_window_s"),
        )
        self._pending = {}
        self.news.clear()
        self._reports = 0
        self._nacked = 0
        self.last = snap
        return snap
