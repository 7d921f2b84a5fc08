"""Congestion-driven quality adaptation of one call: wires the controller to its peer.

:func:`attach_quality` is called once the answer is set (before media flows). It

- puts a live encoder into the call's video sender (:mod:`media.congestion.encoder_control`),
  so the bitrate follows the controller without a keyframe per change;
- reads the RTCP that reaches that sender (receiver reports, REMB);
- limits that sender's retransmissions (:mod:`media.congestion.retransmit`), none while it
  drains a queue, and paces its packets (:mod:`media.congestion.pacer`);
- gives the voice (an Opus sender) a 32 kbps encoder, with in-band FEC if asked where the
  caller decodes it, and counts what it sends out of the REMB estimate;
- gives the caller's mic receiver a low-latency jitter buffer (:mod:`media.congestion.jitter`);
- numbers voice and video packets transport-wide where the caller offered it
  (:func:`negotiate_answer` puts it in the answer), reads the caller's transport feedback
  (:mod:`media.congestion.twcc_monitor`) and answers the caller's own numbered packets;
- pings the caller over the call's ICE pair (:mod:`media.congestion.queue_probe`) to end a
  drain as soon as the bottleneck queue is empty;
- runs a :class:`~media.congestion.controller.QualityController` every ``interval_s`` and
  whenever a receiver report or a REMB reaches the video sender, and applies its target
  bitrate to the encoder (between rungs too) and its rungs: the video track's fps, the
  renderer's frame rate and output height (and a new idle loop at that size); each change
  goes to ``on_change``.

Why each of these, and what it does to a call, is in ``docs/congestion.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import RTCPeerConnection
from aiortc.rtcrtpsender import RTCRtpSender

from inference.render.base import Renderer, rate_follower
from media.aiortc_hooks import sender_counts, sender_rtx_ssrc, sender_ssrc, transceiver_codecs
from media.clock import MediaClock
from media.congestion.controller import QualityController
from media.congestion.encoder_control import (
    LiveVideoEncoder,
    RtcpMonitor,
    install_encoder,
    install_voice_encoder,
    offers_inband_fec,
)
from media.congestion.jitter import LowLatencyJitterBuffer, install_audio_jitter_buffer
from media.congestion.ladder import QualityOptions, Rung
from media.congestion.meters import ByteRate, RenderLag, RepairedShare
from media.congestion.pacer import VideoPacer
from media.congestion.queue_probe import QueueProbe, ice_ping
from media.congestion.retransmit import RetransmitLimiter
from media.congestion.rtcp import RtcpSnapshot
from media.congestion.twcc import add_transport_cc, negotiated_id
from media.congestion.twcc_monitor import TransportFeedbackMonitor
from media.congestion.twcc_report import TransportFeedbackReporter, install_transport_feedback
from media.player import IdleLoop
from media.tracks import ClockedVideoTrack

__all__ = [
    "AdaptationOptions",
    "PeerSession",
    "QualityChange",
    "QualityLoop",
    "QualitySession",
    "attach_quality",
    "negotiate_answer",
]

log = logging.getLogger(__name__)


class QualitySession(Protocol):
    """What adaptation needs of a call (``signaling.call.session.Session`` has it)."""

    @property
    def pc(self) -> RTCPeerConnection: ...

    @property
    def clock(self) -> MediaClock: ...

    @property
    def video_track(self) -> ClockedVideoTrack: ...

    @property
    def renderer(self) -> Renderer: ...


@dataclass
class PeerSession:
    """What adaptation needs of a call, for a bare peer connection without a Session
    (benchmarks, tests)."""

    pc: RTCPeerConnection
    clock: MediaClock
    video_track: ClockedVideoTrack
    renderer: Renderer


@dataclass(frozen=True, slots=True)
class QualityChange:
    """The outgoing video moved to ``rung`` (index ``index`` of the ladder, 0 = top)."""

    rung: Rung
    index: int
    height: int
    bitrate: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptationOptions:
    """``cap_to_renderer``: never ask the renderer for more than its starting height, or
    ``max_height`` where given (a resumed call's renderer may start lower than it was made)."""

    quality: QualityOptions = field(default_factory=QualityOptions)
    interval_s: float = 0.2
    lag_window_s: float = 1.0
    mic_max_wait_packets: int = 3
    cap_to_renderer: bool = True
    max_height: int | None = None
    retransmit_share: float = 0.3  # retransmissions may use this share of the video bitrate
    pace_factor: float | None = 2.5  # video leaves at this x its bitrate (None: in bursts)
    # ... and at this x while the controller knows the link's capacity (a bottleneck was
    # seen): a frame's burst would hold the voice back behind it on a full link
    saturated_pace_factor: float = 1.5
    voice_bitrate: int | None = 32_000  # the Opus voice's bitrate (None: aiortc's 96 kbps)
    # Opus in-band FEC sized for this loss (%), for a caller that decodes it (None: off;
    # measured: no less concealment in Chromium at 2 or 5 % loss on a low-jitter path)
    voice_fec_loss_pct: int | None = None
    queue_probe: bool = True  # end a drain once STUN pings see the bottleneck queue empty
    # number voice and video transport-wide where the caller offers it (every browser
    # does): its feedback replaces its REMB, and the queue is seen from here
    transport_feedback: bool = True

    def __post_init__(self) -> None:
        if self.max_height is not None and self.max_height < 16:
            raise ValueError(f"max_height must be at least 16, got {self.max_height}")
        if not 0.02 <= self.interval_s <= 5:
            raise ValueError(f"interval_s must be within 0.02..5, got {self.interval_s}")
        if self.lag_window_s < self.interval_s:
            raise ValueError("lag_window_s must be >= interval_s")
        if self.mic_max_wait_packets < 1:
            raise ValueError("mic_max_wait_packets must be >= 1")
        if not 0 < self.retransmit_share <= 1:
            raise ValueError("retransmit_share must be in (0, 1]")
        if self.pace_factor is not None and self.pace_factor < 1:
            raise ValueError(f"pace_factor must be >= 1 or None, got {self.pace_factor}")
        if self.voice_fec_loss_pct is not None and not 1 <= self.voice_fec_loss_pct <= 100:
            raise ValueError(
                f"voice_fec_loss_pct must be within 1..100, got {self.voice_fec_loss_pct}"
            )
        if self.saturated_pace_factor < 1:
            raise ValueError(
                f"saturated_pace_factor must be >= 1, got {self.saturated_pace_factor}"
            )


class QualityLoop:
    """The running adaptation of one call; :meth:`stop` ends it."""

    def __init__(
        self,
        session: QualitySession,
        options: AdaptationOptions,
        *,
        on_change: Callable[[QualityChange], None] | None = None,
    ) -> None:
        self.session = session
        self.options = options
        self.controller = QualityController(options.quality)
        self.encoder: LiveVideoEncoder | None = None
        self.monitor: RtcpMonitor | None = None
        self.retransmits: RetransmitLimiter | None = None
        self.pacer: VideoPacer | None = None
        self.audio_monitor: RtcpMonitor | None = None  # more RTT samples, same path
        self.audio_sender: RTCRtpSender | None = None
        self._audio_sent = ByteRate(options.lag_window_s, options.interval_s)
        self.mic_buffers: list[LowLatencyJitterBuffer] = []
        self.changes: list[tuple[float, Rung, str]] = []  # (clock time, rung, reason)
        self._on_change = on_change
        self._max_height = options.max_height or session.renderer.frame_size[1]
        self._lag = RenderLag(options.lag_window_s, options.interval_s)
        self._sent = ByteRate(options.lag_window_s, options.interval_s)
        self._repaired = RepairedShare()
        self._task: asyncio.Task[None] | None = None
        self._applying: asyncio.Task[None] | None = None
        self.probe: QueueProbe | None = None
        self.feedback: TransportFeedbackMonitor | None = None
        self.feedback_reporter: TransportFeedbackReporter | None = None
        self._draining: asyncio.Task[None] | None = None
        self.drains: list[tuple[float, float, bool]] = []  # (clock time, seconds, ended early)
        self._ceiling: int | None = None  # the best rung allowed (limit), None: any
        self._ceiling_reason = ""
        self._applied = self.controller.index  # the rung in force

    def start(self) -> None:
        pc, top = self.session.pc, self.controller.rung
        if self.options.transport_feedback:
            self.feedback = self._watch_feedback(pc)  # before the pacer: it sends through it
            # a browser numbers its microphone's packets too and expects feedback on them
            # (it counts unreported packets as still in flight): answer it
            self.feedback_reporter = install_transport_feedback(pc)
        for tr in pc.getTransceivers():
            if tr.kind == "video" and tr.sender.track is self.session.video_track:
                codecs = transceiver_codecs(tr)
                if not codecs:
                    raise RuntimeError("no negotiated video codec: call after the answer is set")
                try:
                    self.encoder = install_encoder(
                        tr.sender,
                        codecs[0].mimeType,
                        bitrate=top.bitrate,
                        max_bitrate=self.controller.ladder[0].bitrate,
                    )
                except (ValueError, RuntimeError) as exc:  # VpxError is a RuntimeError
                    # aiortc's own encoder stays: fps and size still adapt, bitrate by REMB
                    log.warning("live encoder unavailable (%s): bitrate is aiortc's", exc)
                self.monitor = RtcpMonitor(tr.sender, clock_rate=codecs[0].clockRate)
                self.retransmits = RetransmitLimiter(
                    tr.sender, self._video_bitrate, share=self.options.retransmit_share
                )
                if self.options.pace_factor is not None:
                    self.pacer = VideoPacer(
                        tr.sender,
                        self._video_bitrate,
                        factor=self.options.pace_factor,
                        saturated=lambda: self.controller.capacity is not None,
                        saturated_factor=self.options.saturated_pace_factor,
                    )
            elif tr.kind == "audio":
                if self.audio_monitor is None:
                    self.audio_monitor = RtcpMonitor(tr.sender, clock_rate=48000)
                    self.audio_sender = tr.sender
                codecs = transceiver_codecs(tr)
                voice = self.options.voice_bitrate
                if voice and tr.sender.track is not None and codecs:
                    if codecs[0].mimeType.lower() == "audio/opus":
                        remote = pc.remoteDescription
                        fec = self.options.voice_fec_loss_pct
                        if remote is None or not offers_inband_fec(
                            remote.sdp, codecs[0].payloadType
                        ):
                            fec = None
                        install_voice_encoder(tr.sender, bitrate=voice, fec_loss_pct=fec)
                        log.info(
                            "voice: %d kbps Opus, in-band FEC %s",
                            voice // 1000,
                            "off" if fec is None else f"for {fec} % loss",
                        )
                if tr.receiver.track is None:
                    continue
                self.mic_buffers.append(
                    install_audio_jitter_buffer(
                        tr.receiver, max_wait_packets=self.options.mic_max_wait_packets
                    )
                )
        if self.monitor is None:
            raise RuntimeError("the call has no video sender for its video track")
        if self.options.queue_probe:
            self.probe = QueueProbe(ice_ping(pc))
            self.probe.start()
        self._task = asyncio.ensure_future(self._run())

    def _watch_feedback(self, pc: RTCPeerConnection) -> TransportFeedbackMonitor | None:
        """Number our packets transport-wide where both descriptions negotiated it."""
        ext_ids: dict[int, int] = {}
        voice: int | None = None
        video: set[int] = set()
        for tr in pc.getTransceivers():
            ext_id = negotiated_id(pc, tr.kind)
            if tr.sender.track is None or ext_id is None:
                continue
            if tr.kind == "audio" and voice is None:
                voice = sender_ssrc(tr.sender)
                ext_ids[voice] = ext_id
            elif tr.kind == "video" and tr.sender.track is self.session.video_track:
                ssrcs = {sender_ssrc(tr.sender), sender_rtx_ssrc(tr.sender)}
                video |= ssrcs
                ext_ids.update(dict.fromkeys(ssrcs, ext_id))
        if not ext_ids:
            return None

        def estimate(bps: float) -> None:
            if self.monitor is not None:
                self.monitor.estimate(bps)

        def remb(bps: float) -> None:
            if self.monitor is not None:
                self.monitor.remb(bps)

        return TransportFeedbackMonitor(
            pc.getTransceivers()[0].sender.transport,  # one transport: bundled
            ext_ids,
            voice_ssrc=voice,
            video_ssrcs=frozenset(video),
            on_estimate=estimate,
            on_remb=remb,
            time_fn=self.session.clock.now,
        )

    async def stop(self) -> None:
        if self.probe is not None:
            await self.probe.close()
        for task in (self._task, self._applying, self._draining):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.pacer is not None:
            await self.pacer.close()
        # (after the pacer, which sends through the monitor: each unwraps what it wrapped)
        if self.feedback is not None:
            self.feedback.close()
        if self.feedback_reporter is not None:
            await self.feedback_reporter.close()
        self._log_feedback()

    def _log_feedback(self) -> None:
        fb, rep = self.feedback, self.feedback_reporter
        if fb is None and rep is None:
            return
        every = fb.feedback_interval_s if fb else None
        trace = fb.stats.remb_trace if fb else ()
        log.info(
            "transport feedback: %s read (every %s ms; %s estimates, lowest %s kbps, "
            "%s queue signals), %s sent",
            fb.stats.feedbacks if fb else "none",
            round(every * 1000) if every is not None else "-",
            fb.stats.rembs if fb else 0,
            min((bps for _, bps, _ in trace), default=0) // 1000,
            fb.stats.signals if fb else 0,
            rep.sent if rep else "none",
        )
        log.debug("transport feedback estimates (time, bps, early): %s", list(trace))

    @property
    def rung(self) -> Rung:
        """The rung in force: the controller's, or the limit's when that is lower."""
        return self.controller.ladder[self._applied]

    def limit(self, index: int | None, reason: str = "") -> None:
        """Keep the call at rung ``index`` or a lower one (None: no limit), for reasons
        besides the network (a call over its share of the CPU: its rendering and encoding
        stay bounded too). The controller goes on deciding; its rung counts again once the
        limit is lifted. Applied at the next tick."""
        if index is not None and not 0 <= index < len(self.controller.ladder):
            raise ValueError(f"rung {index} is outside the ladder")
        self._ceiling, self._ceiling_reason = index, reason

    def _wanted(self) -> int:
        """The rung to be in force: the controller's, lowered to the limit."""
        index = self.controller.index
        return index if self._ceiling is None else max(index, self._ceiling)

    def _target_bitrate(self) -> int:
        """The controller's bitrate, at most the limit rung's."""
        want = self.controller.bitrate
        if self._ceiling is not None and self._ceiling > self.controller.index:
            want = min(want, self.controller.ladder[self._ceiling].bitrate)
        return want

    def height_for(self, rung: Rung) -> int:
        """The output height used for ``rung`` (capped to the renderer's starting height)."""
        if self.options.cap_to_renderer:
            return min(rung.height, self._max_height)
        return rung.height

    def _video_bitrate(self) -> float:
        return self.encoder.bitrate if self.encoder is not None else self.controller.rung.bitrate

    def _render_lag(self, now: float) -> float:
        """Seconds of video ticks the track dropped per second over the lag window."""
        track = self.session.video_track
        return self._lag.lag(now, track.frames_dropped, track.fps)

    def _send_bps(self, now: float) -> float | None:
        """Video bitrate the encoder produced over the lag window (None without our encoder)."""
        if self.encoder is None:
            return None
        return self._sent.bps(now, self.encoder.stats.bytes)

    def _audio_bps(self, now: float) -> float:
        """Audio payload bits per second sent lately (REMB counts it in its estimate)."""
        if self.audio_sender is None:
            return 0.0
        octets, _ = sender_counts(self.audio_sender)
        return self._audio_sent.bps(now, octets) or 0.0

    def _repaired_loss(self, now: float, nacked: int) -> float | None:
        """Share of video packets NACKed over the last 2 s (packets estimated from bytes)."""
        if self.encoder is None:
            return None
        return self._repaired.share(now, nacked, self.encoder.stats.bytes)

    async def _run(self) -> None:
        await self._apply(self.rung, "start")
        assert self.monitor is not None
        while True:
            # every interval, and at once when a report or a REMB arrives. Not wait_for:
            # Python 3.11's returns the result when a cancel meets a wait that just ended,
            # swallowing the cancel, and this loop would then run on while stop() waits
            news = asyncio.ensure_future(self.monitor.news.wait())
            try:
                await asyncio.wait((news,), timeout=self.options.interval_s)
            finally:
                news.cancel()
            now = self.session.clock.now()
            snap = self.monitor.take()
            rtts = [snap.rtt_s]
            if self.audio_monitor is not None:
                rtts.append(self.audio_monitor.take().rtt_s)
            rtt = max((r for r in rtts if r is not None), default=None)
            audio = self._audio_bps(now)
            c = self.controller
            # REMB is meant as the receiver's budget for the whole call: the video gets what
            # the voice leaves of it (the estimators seen here, aiortc's and the bot's, are
            # fed only video packets, which carry abs-send-time: then this is headroom)
            if snap.remb_bps is not None:
                c.on_remb(max(0.0, snap.remb_bps - audio))
            if snap.fraction_lost is not None:
                c.on_loss(snap.fraction_lost)
            if rtt is not None:
                c.on_rtt(rtt, snap.jitter_s or 0.0)
            self._feed_sender(now, snap)
            c.on_render_lag(self._render_lag(now))
            rung = c.tick(now)
            wanted = self._wanted()
            reason = c.reason
            if rung is None and wanted != self._applied:  # the limit came or went
                rung = c.ladder[wanted]
                reason = self._ceiling_reason if self._ceiling == wanted else "limit lifted"
            elif rung is not None:  # the controller's change, under the limit if any
                rung = c.ladder[wanted] if wanted != self._applied or c.drain_s else None
            if rung is not None:
                if self._applying is not None and not self._applying.done():
                    await self._applying  # one change at a time, in order
                drain = self.controller.drain_s
                if drain and self.encoder is not None:
                    self.encoder.pause(drain)
                if drain and self.retransmits is not None:
                    self.retransmits.pause(drain)
                if drain and self.pacer is not None:
                    self.pacer.flush()  # stale frames would only refill the queue
                if drain and self.probe is not None:
                    if self._draining is not None:
                        self._draining.cancel()
                    self._draining = asyncio.ensure_future(self._end_drain(drain))
                elif drain:
                    self.drains.append((now, drain, False))
                self._applying = asyncio.ensure_future(self._apply(rung, reason))
            elif self.encoder is not None:
                # the target moves between rungs too: follow it without a size change
                want = self._target_bitrate()
                if abs(want - self.encoder.bitrate) > 0.03 * self.encoder.bitrate:
                    self.encoder.set_bitrate(want)

    def _feed_sender(self, now: float, snap: RtcpSnapshot) -> None:
        """What the sender knows to the controller: the rate sent, the share NACKed, and
        the rate delivered."""
        c = self.controller
        sent, repaired = self._send_bps(now), self._repaired_loss(now, snap.nacked)
        if sent is not None:
            c.on_sent(sent)
        if repaired is not None:
            c.on_repaired(repaired)
        if snap.delivered_bps is not None:
            c.on_delivered(snap.delivered_bps, snap.delivered_window_s or 0.0)

    async def _end_drain(self, drain_s: float) -> None:
        """Resume video as soon as the probe sees the bottleneck queue empty (the
        controller's ``drain_s`` is a guess of its depth; a longer pause is a longer freeze)."""
        assert self.probe is not None
        began = self.session.clock.now()
        early = await self.probe.wait_drained(drain_s)
        if early:
            if self.encoder is not None:
                self.encoder.resume()
            if self.retransmits is not None:
                self.retransmits.resume()
        paused = self.session.clock.now() - began
        self.drains.append((began, paused, early))
        log.info(
            "video paused %.2f s to drain the bottleneck queue (%s)",
            paused,
            "the probe saw it empty" if early else f"the controller's {drain_s:.2f} s",
        )

    async def _apply(self, rung: Rung, reason: str) -> None:
        s = self.session
        self._applied = self.controller.ladder.index(rung)
        if self.encoder is not None:
            self.encoder.set_bitrate(self._target_bitrate())
        s.video_track.fps = rung.fps
        follower = rate_follower(s.renderer)
        if follower is not None:  # draw no more than the track sends
            follower.set_render_fps(rung.fps)
        height = self.height_for(rung)
        if s.renderer.frame_size[1] != height:
            s.renderer.set_output_height(height)
            idle = await asyncio.to_thread(s.renderer.idle_frames)
            s.video_track.set_idle(IdleLoop(idle, s.renderer.fps))
        self.changes.append((s.clock.now(), rung, reason))
        log.info(
            "quality -> %d px %d fps %d kbps (%s)", height, rung.fps, rung.bitrate // 1000, reason
        )
        if self._on_change is not None:
            index = self.controller.ladder.index(rung)
            self._on_change(QualityChange(rung, index, height, self._target_bitrate(), reason))


def negotiate_answer(
    answer_sdp: str, offer_sdp: str, options: AdaptationOptions | None = None
) -> str:
    """Our answer with what :func:`attach_quality` uses negotiated where the offer has it:
    transport-wide sequence numbers on voice and video (``transport_feedback``)."""
    if not (options or AdaptationOptions()).transport_feedback:
        return answer_sdp
    return add_transport_cc(answer_sdp, offer=offer_sdp, kinds=("audio", "video"))


def attach_quality(
    session: QualitySession,
    options: AdaptationOptions | None = None,
    *,
    on_change: Callable[[QualityChange], None] | None = None,
) -> QualityLoop:
    """Start quality adaptation for a call whose answer is set; returns the running loop."""
    loop = QualityLoop(session, options or AdaptationOptions(), on_change=on_change)
    loop.start()
    return loop
