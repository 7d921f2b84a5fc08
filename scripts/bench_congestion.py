"""Glass-to-glass video latency under congestion: our quality control vs plain aiortc.

Two aiortc peers in one process talk through :class:`tests.harness.netem.UdpRelay` on 127.0.0.1
(candidates rewritten to cross it). The sender plays the call's clocked audio and video
tracks; every video frame carries its send-time stamp (16 bits of milliseconds + a 4-bit
checksum as black/white blocks), which the receiver reads back from the decoded luma, so
latency is measured on the decoded picture with the one shared clock. Scenarios:

1. ``cap``: 400 kbps bottleneck (token bucket, 1 s queue) for ``--cap-s`` seconds, then none;
2. ``loss``: 2 % loss and 50 ms one-way delay both ways for ``--loss-s`` seconds.

The receiving peer (the bot's side) uses the bot's receive side in both runs,
``LowLatencyVideoJitterBuffer`` and ``LowLatencyJitterBuffer`` for audio
(``--stock-receiver`` for aiortc's, which wait for 512 video packets once a retransmission
is lost, and for 16 audio packets after any lost one: that measures aiortc's receiver, not
the sender under test), and ``FastRemoteBitrateEstimator``, whose REMB
leaves as soon as a bottleneck queue starts filling (``--no-fast-remb``: aiortc's estimator
alone). ``--transport-cc all`` has the bot play a browser that negotiated transport-wide
congestion control: feedback every 100 ms and no REMB, so our sender estimates from the
feedback (``twcc_monitor``); ``voice`` numbers the voice only. ``remb-ms`` is how
long after the cap's onset the first REMB under twice the cap left the receiver (with
``all``: would have left it).
Each runs twice, with our controller (``media.congestion.loop.attach_quality``) and with
plain aiortc defaults (its VP8 encoder driven by REMB, 720 px 25 fps fixed). Printed:
latency p50/p95 (during the impairment and overall), freezes (> 200 ms without a new
frame), audio gaps (> 100 ms between voice frames arriving; those after a voice frame sent
between the cap's onset and the sender's first reaction are told apart: no sender avoids
them in a FIFO bottleneck), voice frames lost (never
arrived, or too late for the bot's buffer) and the packets the bottleneck dropped, received
height/fps per second, time back to the top rung. A PNG plot
of received bitrate, height and latency over time is written with ``--plot``.

    .venv/bin/python scripts/bench_congestion.py [--quick] [--repeat N] [--plot P] [--json J]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from media.aiortc_hooks import offer_loopback_host_address
from media.clock import MediaClock
from media.congestion.jitter import LowLatencyJitterBuffer, install_receive_buffers
from media.congestion.loop import AdaptationOptions, PeerSession, QualityLoop, attach_quality
from media.congestion.twcc_report import (
    TransportFeedbackReporter,
    install_transport_feedback,
    stop_remb,
)
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack
from tests.harness.netem import Impairment, UdpRelay, relayed_call

BITS, CHECK = 16, 4
TOP_HEIGHT = 720
CAP_BPS = 400_000


# ---- the stamped picture --------------------------------------------------------------
def stamp_bits(t_ms: int) -> list[int]:
    v = t_ms & 0xFFFF
    check = (v ^ (v >> 4) ^ (v >> 8) ^ (v >> 12)) & 0xF
    return [(v >> (15 - i)) & 1 for i in range(BITS)] + [
        (check >> (3 - i)) & 1 for i in range(CHECK)
    ]


def _row_bits(luma: np.ndarray, row: int, bw: int, bh: int) -> list[int]:
    band = luma[row * bh + bh // 4 : row * bh + bh * 3 // 4]
    return [
        int(band[:, i * bw + bw // 4 : i * bw + bw * 3 // 4].mean() > 128)
        for i in range(BITS + CHECK)
    ]


def read_stamp(luma: np.ndarray) -> int | None:
    """The 16-bit ms stamp in a decoded frame's luma plane, or None if unreadable.

    Row 1 holds the bits and a 4-bit check, row 2 their complement: a corrupted picture
    passes both by chance about once in a million.
    """
    h, w = luma.shape
    bw, bh = w // (BITS + CHECK), max(8, h // 12)
    bits, inverse = _row_bits(luma, 0, bw, bh), _row_bits(luma, 1, bw, bh)
    if any(a == b for a, b in zip(bits, inverse, strict=True)):
        return None
    v = 0
    for b in bits[:BITS]:
        v = (v << 1) | b
    return v if stamp_bits(v) == bits else None


class StampRenderer:
    """A stand-in renderer: square frames of a moving noisy texture, any height."""

    fps = 25

    def __init__(self, height: int) -> None:
        self._h = height
        self._textures: dict[int, np.ndarray] = {}

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._h, self._h

    def set_output_height(self, height: int) -> None:
        self._h = max(32, int(height) // 2 * 2)

    def idle_frames(self) -> list[np.ndarray]:
        return [self.texture(self._h)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        """The bench's moving texture for as many frames as the audio covers (the bench
        itself draws with ``frame_at``; this keeps the Renderer contract whole)."""
        n = -(-len(audio_16k) * self.fps // 16000)
        for start in range(0, n, 5):
            yield [self.texture(self._h)] * min(5, n - start)

    def texture(self, h: int) -> np.ndarray:
        if h not in self._textures:
            y, x = np.mgrid[0:h, 0 : 2 * h] / h * 40
            base = np.stack(
                [np.sin(x) * 60 + 128, np.cos(y * 1.3) * 60 + 128, np.sin(x + y) * 60 + 128], -1
            )
            noise = np.random.default_rng(h).integers(-30, 30, base.shape)
            self._textures[h] = np.clip(base + noise, 0, 255).astype(np.uint8)
        return self._textures[h]

    def frame_at(self, t: float) -> np.ndarray:
        h = self._h
        tex = self.texture(h)
        off = int(t * 40) % h
        img = np.ascontiguousarray(tex[:, off : off + h])
        bw, bh = h // (BITS + CHECK), max(8, h // 12)
        for i, b in enumerate(stamp_bits(round(t * 1000))):
            img[:bh, i * bw : (i + 1) * bw] = 255 if b else 0
            img[bh : 2 * bh, i * bw : (i + 1) * bw] = 0 if b else 255
        return img


class StampIdle(IdleLoop):
    def __init__(self, renderer: StampRenderer) -> None:
        super().__init__([renderer.texture(renderer.frame_size[1])])
        self.renderer = renderer

    def frame_at(self, t: float) -> np.ndarray:
        return self.renderer.frame_at(t)


class StampVideoTrack(ClockedVideoTrack):
    """Keeps the stamped source whatever idle loop adaptation installs."""

    def set_idle(self, idle: IdleLoop) -> None:
        pass


# ---- one run ------------------------------------------------------------------------------
@dataclass
class Trace:
    video: list[tuple[float, float | None, int, int]] = field(
        default_factory=list
    )  # now, lat, h, w
    audio: list[float] = field(default_factory=list)
    audio_pts: list[int] = field(default_factory=list)  # each voice frame's RTP-clock pts
    bytes: list[tuple[float, int]] = field(default_factory=list)
    control: list[tuple[float, float, float | None]] = field(default_factory=list)
    rembs: list[tuple[float, int, bool]] = field(default_factory=list)  # now, bps, fast
    voice_lost: int | None = None  # voice frames the bot's buffer never got (None: aiortc's)
    queue_drops: int = 0  # packets the bottleneck's queue dropped (it was full)
    stalls: list[tuple[float, float]] = field(default_factory=list)  # event loop ran late


async def _watch_loop(clock: MediaClock, trace: Trace, every_s: float = 0.005) -> None:
    """Note when this process's event loop ran a timer 40+ ms late (sender, relay and
    receiver share it: a stall delays the voice whatever the network does)."""
    while True:
        due = clock.now() + every_s
        await asyncio.sleep(every_s)
        late = clock.now() - due
        if late > 0.04:
            trace.stalls.append((due, late))


async def _drain(track: MediaStreamTrack, clock: MediaClock, trace: Trace) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = clock.now()
        if isinstance(frame, av.AudioFrame):
            trace.audio.append(now)
            trace.audio_pts.append(frame.pts or 0)
            continue
        assert isinstance(frame, av.VideoFrame)
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)[
            :, : frame.width
        ]
        ms = read_stamp(luma)
        lat = None
        if ms is not None:
            now_ms = round(now * 1000)
            lat = ((now_ms - ms) % 65536) / 1000
        trace.video.append((now, lat, frame.height, frame.width))


async def run_case(
    ours: bool,
    scenario: str,
    t: dict[str, float],
    *,
    stock_receiver: bool = False,
    fast_remb: bool = True,
    queue_s: float = 1.0,
    queue_probe: bool = True,
    transport_cc: str | None = None,
) -> dict[str, Any]:
    clock = MediaClock()
    renderer = StampRenderer(TOP_HEIGHT)
    player = AvPlayer(clock=clock)
    video = StampVideoTrack(player, clock, StampIdle(renderer), fps=25)
    audio = ClockedAudioTrack(player, clock)
    trace = Trace()
    loops: list[QualityLoop] = []
    voice: list[LowLatencyJitterBuffer] = []
    reporters: list[TransportFeedbackReporter] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        if not stock_receiver:
            installed = install_receive_buffers(  # the bot's (signaling.client.bot_call)
                receiver,
                fast_remb=fast_remb,
                on_remb=lambda _ms, bps, fast: trace.rembs.append((clock.now(), bps, fast)),
            )
            voice.extend(b for b in installed if isinstance(b, LowLatencyJitterBuffer))
            if transport_cc:  # as a browser does: feedback every 100 ms
                reporter = install_transport_feedback(receiver)
                if reporter is None:
                    raise RuntimeError("transport-cc was not negotiated")
                reporters.append(reporter)
                if transport_cc == "all":  # ... and no REMB for the video it reports
                    stop_remb(
                        receiver,
                        on_remb=lambda _ms, bps, fast: trace.rembs.append((clock.now(), bps, fast)),
                    )
        if ours:  # as Session.accept does: after the descriptions, before media flows
            session = PeerSession(pc=sender, clock=clock, video_track=video, renderer=renderer)
            loops.append(attach_quality(session, AdaptationOptions(queue_probe=queue_probe)))

    watcher = asyncio.ensure_future(_watch_loop(clock, trace))
    async with relayed_call(
        audio,
        video,
        lambda tr: _drain(tr, clock, trace),
        seed=7,
        negotiated=negotiated,
        transport_cc={"voice": ("audio",), "all": ("audio", "video")}.get(transport_cc or "", ()),
    ) as call:
        try:
            phases = await _impair(call.relay, scenario, clock, t, trace, loops, queue_s)
        finally:
            for running in loops:
                await running.stop()
            for reporter in reporters:
                await reporter.close()
        watcher.cancel()
        trace.queue_drops = call.relay.a_to_b.stats.queue_drops
        if voice:
            trace.voice_lost = sum(b.skipped for b in voice)
    t0, imp_start, end = phases
    loop = loops[0] if loops else None
    return _summarize(trace, ours, scenario, t0, imp_start, imp_start + t[scenario], end, loop)


async def _impair(
    relay: UdpRelay,
    scenario: str,
    clock: MediaClock,
    t: dict[str, float],
    trace: Trace,
    loops: list[QualityLoop],
    queue_s: float,
) -> tuple[float, float, float]:
    """Play the scenario's phases on ``relay``; returns (start, impairment start, end)."""
    t0 = clock.now()
    imp_start, imp_end = t0 + t["warm"], t0 + t["warm"] + t[scenario]
    end = imp_end + t["after"]
    phase = "before"
    while clock.now() < end:
        now = clock.now()
        if phase == "before" and now >= imp_start:
            phase = "during"
            if scenario == "cap":
                relay.impair(a_to_b=Impairment(rate_bps=CAP_BPS, queue_limit_s=queue_s))
            else:
                lossy = Impairment(delay_s=0.05, loss=0.02)
                relay.impair(a_to_b=lossy, b_to_a=lossy)
        elif phase == "during" and now >= imp_end:
            phase = "after"
            relay.impair(a_to_b=Impairment(), b_to_a=Impairment())
        trace.bytes.append((now, relay.a_to_b.stats.bytes_out))
        if loops:
            ctl = loops[0].controller
            trace.control.append((now, ctl.target, ctl.capacity))
        await asyncio.sleep(0.25)
    return t0, imp_start, end


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return round(float(np.percentile(xs, q)) * 1000, 1)


def _reaction(tr: Trace, i0: float, fell: list[float], loop: Any) -> float | None:
    """When the sender first acted on the onset: for ours a rung change, a drain or a cut of
    the target (sampled every 0.25 s), for aiortc's the receiver's first low REMB."""
    if loop is None:
        return fell[0] if fell else None
    acts = [t for t, *_ in loop.changes if t >= i0] + [t for t, *_ in loop.drains if t >= i0]
    before = [tg for now, tg, _ in tr.control if now < i0]
    if before:
        acts += [now for now, tg, _ in tr.control if now >= i0 and tg < 0.95 * before[-1]][:1]
    return min(acts) if acts else None


def _forced_gaps(tr: Trace, t0: float, i0: float, reacted: float | None) -> list[float]:
    """The audio gaps no sender could have avoided: those after a voice frame sent between
    the onset and the sender's reaction (plus one video frame's time, 40 ms: a frame being
    encoded then still leaves). In a FIFO bottleneck every such frame waits behind the video
    sent since the one before it; at a 5.5x overload 20 ms of it is 110 ms on the link.

    A frame's send time is its pts on the sender's clock, placed by the least delayed frame
    before the onset (a loopback path: a millisecond or so).
    """
    if reacted is None or len(tr.audio) < 2 or len(tr.audio_pts) != len(tr.audio):
        return []
    pts_s = [p / 48000 for p in tr.audio_pts]
    early = [a - p for a, p in zip(tr.audio, pts_s, strict=True) if t0 + 1 <= a < i0]
    if not early:
        return []
    offset = min(early)
    out = []
    for k in range(len(tr.audio) - 1):
        gap = tr.audio[k + 1] - tr.audio[k]
        sent = offset + pts_s[k]
        if gap > 0.1 and tr.audio[k] > t0 + 1 and i0 - 0.02 <= sent < reacted + 0.04:
            out.append(gap)
    return out


def _summarize(
    tr: Trace, ours: bool, scenario: str, t0: float, i0: float, i1: float, end: float, loop: Any
) -> dict[str, Any]:
    def window(a: float, b: float) -> list[float]:
        return [lat for now, lat, _, _ in tr.video if a <= now < b and lat is not None]

    frames = [now for now, *_ in tr.video if t0 + 1 <= now < end]
    gaps = [b - a for a, b in itertools.pairwise(frames) if b - a > 0.2]
    agaps = [
        b - a for a, b in zip(tr.audio, tr.audio[1:], strict=False) if b - a > 0.1 and a > t0 + 1
    ]
    per_s = []
    for k in range(int(end - t0)):
        sel = [(h, w) for now, _, h, w in tr.video if t0 + k <= now < t0 + k + 1]
        per_s.append((k, sel[-1][0] if sel else 0, len(sel)))
    # back to normal after the impairment lifts
    top_at = None
    for now, _, h, _ in tr.video:
        if now >= i1 and h == TOP_HEIGHT:
            top_at = round(now - i1, 2)
            break
    bad_after = [now for now, lat, _, _ in tr.video if now >= i1 and lat is not None and lat > 0.2]
    settle = round(max(bad_after) - i1, 2) if bad_after else 0.0
    lat_all = window(t0 + 1, end)
    # the receiver's first REMB under twice the cap after the onset: how soon the sender knew
    fell = [now for now, bps, _ in tr.rembs if now >= i0 and bps < 2 * CAP_BPS]
    if scenario != "cap":
        fell = []

    def kbps(a: float, b: float) -> int | None:
        sel = [(now, n) for now, n in tr.bytes if a <= now <= b]
        if len(sel) < 2 or sel[-1][0] <= sel[0][0]:
            return None
        return round((sel[-1][1] - sel[0][1]) * 8 / (sel[-1][0] - sel[0][0]) / 1000)

    def stalled(a: float, b: float) -> float:
        """The longest loop stall within the voice gap from a to b."""
        return max((late for due, late in tr.stalls if a - 0.01 <= due < b), default=0.0)

    reacted = _reaction(tr, i0, fell, loop) if scenario == "cap" else None
    forced = _forced_gaps(tr, t0, i0, reacted)
    out = {
        "mode": "ours" if ours else "aiortc",
        "scenario": scenario,
        "latency_ms_during": {"p50": _pct(window(i0, i1), 50), "p95": _pct(window(i0, i1), 95)},
        "latency_ms_all": {"p50": _pct(lat_all, 50), "p95": _pct(lat_all, 95)},
        "stamps_read": f"{len(lat_all)}/{len(frames)}",
        "kbps_before_during_after": [kbps(t0 + 1, i0), kbps(i0, i1), kbps(i1, end)],
        "freezes": len(gaps),
        "freeze_s": round(sum(gaps), 2),
        "audio_gaps_over_100ms": len(agaps),
        "audio_gaps_sender_could_not_avoid": len(forced),
        "sender_reacted_after_onset_ms": None if reacted is None else round((reacted - i0) * 1000),
        "voice_frames_lost": tr.voice_lost,
        "queue_drops": tr.queue_drops,
        "audio_gaps": [  # [at, seconds, the longest event-loop stall within it]
            [round(a - t0, 2), round(b - a, 3), round(stalled(a, b), 3)]
            for a, b in itertools.pairwise(tr.audio)
            if b - a > 0.1 and a > t0 + 1
        ],
        "loop_stalls_over_40ms": len(tr.stalls),
        "longest_loop_stall_ms": round(max((late for _, late in tr.stalls), default=0.0) * 1000),
        "control": [[round(now - t0, 2), tg, cap] for now, tg, cap in tr.control],
        "time_to_top_rung_s": top_at,
        "remb_after_onset_ms": round((fell[0] - i0) * 1000) if fell else None,
        "fast_rembs": sum(1 for _, _, fast in tr.rembs if fast),
        "rembs": [[round(now - t0, 3), bps, fast] for now, bps, fast in tr.rembs],
        "latency_settled_under_200ms_after_s": settle,
        "height_fps_per_s": per_s,
        "t_rel": [[round(now - t0, 2), lat, h] for now, lat, h, _ in tr.video],
        "bytes": [[round(now - t0, 2), b] for now, b in tr.bytes],
        "impairment": [round(i0 - t0, 2), round(i1 - t0, 2)],
    }
    if loop is not None:
        out["rung_changes"] = [
            [round(tt - t0, 2), r.height, r.fps, r.bitrate, why] for tt, r, why in loop.changes
        ]
        enc = loop.encoder
        if enc is not None:
            out["encoder"] = {
                "keyframes": enc.stats.keyframes,
                "forced": enc.stats.forced_keyframes,
                "bitrate_changes": enc.stats.bitrate_changes,
            }
        out["drains"] = [[round(a - t0, 2), round(d, 3), early] for a, d, early in loop.drains]
        if loop.feedback is not None:  # the sender's own signals, from transport feedback
            fb = loop.feedback.stats
            seen = [at for at in fb.signal_times if at >= i0]
            out["transport_feedback"] = {
                "feedbacks": fb.feedbacks,
                "signals": fb.signals,
                "first_signal_after_onset_ms": round((seen[0] - i0) * 1000) if seen else None,
            }
    return out


def _print(results: list[dict[str, Any]]) -> None:
    print(
        f"{'scenario':8} {'mode':7} {'p50/p95 during':>16} {'p50/p95 all':>16} {'freezes':>12} "
        f"{'audio gaps':>10} {'top rung':>9} {'lat<200ms':>9} keyframes remb-ms fast"
    )
    for r in results:
        d, a = r["latency_ms_during"], r["latency_ms_all"]
        enc = r.get("encoder", {})
        lat = f"{d['p50']!s:>7}/{d['p95']!s:<8} {a['p50']!s:>7}/{a['p95']!s:<8} "
        print(
            f"{r['scenario']:8} {r['mode']:7} {lat}"
            f"{r['freezes']:>4} ({r['freeze_s']:>4}s) {r['audio_gaps_over_100ms']:>10} "
            f"{r['time_to_top_rung_s']!s:>9} {r['latency_settled_under_200ms_after_s']!s:>9} "
            f"{enc.get('keyframes', '-')!s:>9} {r['remb_after_onset_ms']!s:>7} {r['fast_rembs']:>4}"
        )
    for r in results:
        b, d, a = r["kbps_before_during_after"]
        print(
            f"{r['scenario']}/{r['mode']} relay out kbps before/during/after: {b}/{d}/{a}; "
            f"bottleneck drops {r['queue_drops']}, voice frames lost {r['voice_frames_lost']}"
        )
        if r["sender_reacted_after_onset_ms"] is not None:
            print(
                f"{r['scenario']}/{r['mode']} audio gaps [at, s, loop stall s] {r['audio_gaps']}: "
                f"{r['audio_gaps_sender_could_not_avoid']} after voice sent before the sender "
                f"reacted ({r['sender_reacted_after_onset_ms']} ms after the onset), "
                f"{_avoidable(r)} after"
            )
        hs = " ".join(f"{k}:{h}/{n}" for k, h, n in r["height_fps_per_s"])
        print(f"{r['scenario']}/{r['mode']} height/fps per second: {hs}")
        if "rung_changes" in r:
            print(f"{r['scenario']}/{r['mode']} rung changes: {r['rung_changes']}")
        if r.get("drains"):
            ds = " ".join(f"{a}s:{d}s{'*' if e else ''}" for a, d, e in r["drains"])
            print(f"{r['scenario']}/{r['mode']} drains (* ended by the queue probe): {ds}")
        if r.get("transport_feedback"):
            print(f"{r['scenario']}/{r['mode']} transport feedback: {r['transport_feedback']}")


def _avoidable(r: dict[str, Any]) -> int:
    return int(r["audio_gaps_over_100ms"] - r["audio_gaps_sender_could_not_avoid"])


def _print_medians(results: list[dict[str, Any]]) -> None:
    """Median over the runs of each scenario and controller (the machine is noisy)."""

    def med(xs: list[float | None]) -> str:
        vals = [x for x in xs if x is not None]
        return f"{float(np.median(vals)):.1f}" if vals else "-"

    print(f"medians over {1 + max(r['run'] for r in results)} runs:")
    print(
        f"{'scenario':8} {'mode':7} {'p95 during ms':>13} {'p95 all ms':>10} {'freezes':>7} "
        f"{'freeze s':>8} {'audio gaps':>10} {'avoidable':>9} {'voice lost':>10} "
        f"{'top rung s':>10} {'remb ms':>7}  per run p95 during"
    )
    keys = dict.fromkeys((r["scenario"], r["mode"]) for r in results)
    for scenario, mode in keys:
        rs = [r for r in results if r["scenario"] == scenario and r["mode"] == mode]
        p95 = [r["latency_ms_during"]["p95"] for r in rs]
        print(
            f"{scenario:8} {mode:7} {med(p95):>13} "
            f"{med([r['latency_ms_all']['p95'] for r in rs]):>10} "
            f"{med([r['freezes'] for r in rs]):>7} {med([r['freeze_s'] for r in rs]):>8} "
            f"{med([r['audio_gaps_over_100ms'] for r in rs]):>10} "
            f"{med([_avoidable(r) for r in rs]):>9} "
            f"{med([r['voice_frames_lost'] for r in rs]):>10} "
            f"{med([r['time_to_top_rung_s'] for r in rs]):>10} "
            f"{med([r['remb_after_onset_ms'] for r in rs]):>7}  {p95}"
        )


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen = sorted({r["scenario"] for r in results})
    fig, axes = plt.subplots(3, len(scen), figsize=(7 * len(scen), 9), squeeze=False)
    for col, s in enumerate(scen):
        for r in (r for r in results if r["scenario"] == s):
            b = np.array(r["bytes"], dtype=float)
            if len(b) > 1:
                rate = np.diff(b[:, 1]) * 8 / np.diff(b[:, 0]) / 1000
                axes[0][col].plot(b[1:, 0], rate, label=r["mode"])
            if r.get("control"):
                c = r["control"]
                axes[0][col].plot(
                    [x[0] for x in c], [x[1] / 1000 for x in c], "--", label="ours: target"
                )
            v = [(t, lat, h) for t, lat, h in r["t_rel"]]
            axes[1][col].plot([x[0] for x in v], [x[2] for x in v], label=r["mode"])
            pts = [(t, lat * 1000) for t, lat, _ in v if lat is not None]
            axes[2][col].plot([p[0] for p in pts], [p[1] for p in pts], ".", ms=2, label=r["mode"])
            for ax in axes[:, col]:
                ax.axvspan(*r["impairment"], color="grey", alpha=0.08)
        axes[0][col].set_title(f"{s}: received video kbps (relay out)")
        axes[1][col].set_title("received height (px) = rung")
        axes[2][col].set_title("glass-to-glass latency (ms)")
        axes[2][col].set_yscale("log")
        for ax in axes[:, col]:
            ax.legend()
            ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    offer_loopback_host_address(only=True)
    logging.basicConfig(level=logging.WARNING)
    times = {"warm": args.warm_s, "cap": args.cap_s, "loss": args.loss_s, "after": args.after_s}
    results = []
    for run in range(args.repeat):
        for scenario in args.scenarios:
            for ours in [m == "ours" for m in args.modes]:
                r = await run_case(
                    ours,
                    scenario,
                    times,
                    stock_receiver=args.stock_receiver,
                    fast_remb=not args.no_fast_remb,
                    queue_s=args.queue_s,
                    queue_probe=not args.no_queue_probe,
                    transport_cc=args.transport_cc,
                )
                r["run"] = run
                results.append(r)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="short phases (a smoke test, ~40 s)")
    p.add_argument("--scenarios", nargs="+", default=["cap", "loss"], choices=["cap", "loss"])
    p.add_argument("--warm-s", type=float, default=5.0)
    p.add_argument("--cap-s", type=float, default=20.0)
    p.add_argument("--loss-s", type=float, default=15.0)
    p.add_argument("--after-s", type=float, default=12.0)
    p.add_argument("--queue-s", type=float, default=1.0, help="bottleneck queue limit (s)")
    p.add_argument(
        "--stock-receiver",
        action="store_true",
        help="receive with aiortc's own jitter buffers (video stalls for good after a lost "
        "retransmission) instead of media.congestion.jitter's bounded one",
    )
    p.add_argument(
        "--no-fast-remb",
        action="store_true",
        help="the bot's buffers without the early REMB of fast_remb (aiortc's estimator only)",
    )
    p.add_argument(
        "--no-queue-probe",
        action="store_true",
        help="our controller's drains last their full drain_s (no STUN pings to see the "
        "bottleneck queue empty)",
    )
    p.add_argument(
        "--transport-cc",
        choices=["voice", "all"],
        help="negotiate transport-wide sequence numbers on the voice (or on voice and video) "
        "and have the bot send transport feedback every 100 ms, as a browser does; with "
        "'all' the bot sends no REMB (a browser sends none for a stream it reports): our "
        "sender estimates from the feedback (media.congestion.twcc_monitor)",
    )
    p.add_argument("--modes", nargs="+", default=["ours", "aiortc"], choices=["ours", "aiortc"])
    p.add_argument(
        "--repeat", type=int, default=1, help="run everything N times; prints the medians too"
    )
    p.add_argument("--plot", type=Path, help="write a PNG plot here (of the first run)")
    p.add_argument("--json", type=Path, help="write all results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.warm_s, args.cap_s, args.loss_s, args.after_s = 2.0, 4.0, 3.0, 3.0
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    results = asyncio.run(_main(args))
    for run in range(args.repeat):
        if args.repeat > 1:
            print(f"-- run {run + 1} of {args.repeat}")
        _print([r for r in results if r["run"] == run])
    if args.repeat > 1:
        _print_medians(results)
    if args.json:
        args.json.write_text(json.dumps(results))
    if args.plot:
        _plot([r for r in results if r["run"] == 0], args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
