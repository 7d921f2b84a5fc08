"""The sender's view of a bottleneck from transport feedback on the voice: the detector on a
FIFO model, and the whole loop on real aiortc peers through a shaped relay."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc import RTCPeerConnection

from media.congestion.jitter import install_receive_buffers
from media.congestion.loop import (
    AdaptationOptions,
    PeerSession,
    QualityLoop,
    attach_quality,
    negotiate_answer,
)
from media.congestion.twcc import add_transport_cc, transport_cc_id
from media.congestion.twcc_monitor import BusyQueueDetector
from media.congestion.twcc_report import (
    TransportFeedbackReporter,
    install_transport_feedback,
    stop_remb,
)
from tests.harness.netem import Impairment, relayed_call
from tests.media.congestion.test_twcc import OFFER
from tests.rtc_helpers import drain_track, noise_tracks, patch_loopback_ice

VOICE, MTU = 63, 1200


def _sends(until_ms: float, video_bps: float) -> list[tuple[float, int, bool]]:
    """(send ms, bytes, is voice): voice every 20 ms, a video frame every 40 ms paced at
    2.5x the video rate in MTU packets."""
    out = [(float(t), VOICE, True) for t in range(0, int(until_ms), 20)]
    frame = int(video_bps / 8 / 25)
    for k in range(int(until_ms) // 40):
        t = k * 40 + 7.0
        left = frame
        while left > 0:
            size = min(MTU, left)
            out.append((t, size, False))
            t += size * 8 * 1000 / (2.5 * video_bps)
            left -= size
    return sorted(out)


def _voice_samples(
    sends: list[tuple[float, int, bool]], link_bps: float | None, onset_ms: float, delay_ms=5.0
) -> list[tuple[float, float, int]]:
    """(arrival ms, send ms, bytes since the last voice packet) for each voice packet, over
    a FIFO link that is unlimited before ``onset_ms`` and ``link_bps`` after it."""
    busy_until, since, out = 0.0, 0, []
    for t, size, voice in sends:
        since += size
        if link_bps is None or t < onset_ms:
            leave = t
        else:
            leave = max(t, busy_until) + size * 8 * 1000 / link_bps
            busy_until = leave
        if voice:
            out.append((leave + delay_ms, t, since))
            since = 0
    return out


def _first(detector: BusyQueueDetector, samples: list[tuple[float, float, int]]):
    for arrival, send, size in samples:
        bps = detector.observe(arrival_ms=arrival, send_ms=send, size=size)
        if bps is not None:
            return arrival, bps
    return None


def test_a_sudden_bottleneck_is_seen_in_a_few_voice_packets_with_its_rate() -> None:
    samples = _voice_samples(_sends(4000, 2_000_000), 400_000, onset_ms=2000)
    hit = _first(BusyQueueDetector(), samples)
    assert hit is not None
    at, bps = hit
    # the voice packets that met the queue arrive late: the first few are enough
    assert at - 2000 < 450, at
    assert 0.85 * 400_000 * 0.85 < bps < 0.85 * 400_000 * 1.15, bps


def test_no_queue_no_signal() -> None:
    samples = _voice_samples(_sends(4000, 2_000_000), None, onset_ms=0)
    assert _first(BusyQueueDetector(), samples) is None


def test_a_delay_step_or_a_stall_reads_as_the_rate_sent_not_a_bottleneck() -> None:
    sends = _sends(4000, 2_000_000)
    samples = _voice_samples(sends, None, onset_ms=0)
    sent_bps = sum(s for _, s, _ in sends) * 8 / 4.0
    stepped = [(a + (150 if s >= 2000 else 0), s, z) for a, s, z in samples]
    # a receiver whose loop stalls 300 ms reads what came meanwhile at the stall's end
    stalled = [(max(a, 2300.0) if 2000 <= a < 2300 else a, s, z) for a, s, z in samples]
    for case in (stepped, stalled):
        hit = _first(BusyQueueDetector(), case)
        assert hit is None or hit[1] > 0.7 * sent_bps, hit


def test_jitter_alone_is_no_bottleneck() -> None:
    rng = random.Random(3)
    samples = _voice_samples(_sends(6000, 2_000_000), None, onset_ms=0)
    jittered = [(a + rng.uniform(0, 50), s, z) for a, s, z in samples]  # in send order
    assert _first(BusyQueueDetector(), jittered) is None


async def test_a_browser_like_receivers_feedback_lets_the_sender_step_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real peers through a relay: the receiver sends only aiortc's REMB (a browser's
    estimator) and transport feedback; the sender sees the cap itself, long before REMB."""
    patch_loopback_ice(monkeypatch)
    t = noise_tracks()
    loops: list[QualityLoop] = []
    reporters: list[TransportFeedbackReporter] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        install_receive_buffers(receiver, fast_remb=False)
        reporter = install_transport_feedback(receiver)
        assert reporter is not None, "transport-cc was not negotiated"
        reporters.append(reporter)
        loops.append(attach_quality(PeerSession(sender, t.clock, t.video, t.renderer)))

    async with relayed_call(
        t.audio, t.video, drain_track, seed=5, negotiated=negotiated, transport_cc=("audio",)
    ) as call:
        try:
            await asyncio.sleep(2.5)
            feedback = loops[0].feedback
            assert feedback is not None
            assert feedback.stats.feedbacks >= 10 and feedback.stats.signals == 0
            assert feedback.stats.numbered > 100
            onset = t.clock.now()
            call.relay.impair(a_to_b=Impairment(rate_bps=300_000, queue_limit_s=1.0))
            for _ in range(40):
                await asyncio.sleep(0.05)
                if feedback.stats.signals:
                    break
            assert feedback.stats.signal_times, "the sender never saw the bottleneck"
            assert feedback.stats.signal_times[0] - onset < 1.0
            for _ in range(20):
                await asyncio.sleep(0.05)
                if loops[0].controller.index > 0:
                    break
            assert loops[0].controller.index > 0, "the sender did not step down"
        finally:
            for running in loops:
                await running.stop()
            for reporter in reporters:
                await reporter.close()


async def test_without_transport_cc_nothing_is_numbered(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_loopback_ice(monkeypatch)
    t = noise_tracks()
    loops: list[QualityLoop] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        assert install_transport_feedback(receiver) is None
        loops.append(attach_quality(PeerSession(sender, t.clock, t.video, t.renderer)))

    async with relayed_call(t.audio, t.video, drain_track, seed=5, negotiated=negotiated):
        try:
            await asyncio.sleep(0.5)
            assert loops[0].feedback is None
        finally:
            for running in loops:
                await running.stop()


async def test_with_the_video_numbered_the_sender_estimates_what_rembs_would_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Voice and video numbered: the receiver, as a browser, sends transport feedback and
    no REMB; the sender's own estimator (the one the REMB came from) sees the cap at once
    and gives the values the receiver's would have sent."""
    patch_loopback_ice(monkeypatch)
    t = noise_tracks()
    loops: list[QualityLoop] = []
    reporters: list[TransportFeedbackReporter] = []
    would: list[tuple[float, int, bool]] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        install_receive_buffers(receiver)
        reporter = install_transport_feedback(receiver)
        assert reporter is not None
        reporters.append(reporter)
        assert stop_remb(receiver, on_remb=lambda _ms, b, f: would.append((t.clock.now(), b, f)))
        loops.append(attach_quality(PeerSession(sender, t.clock, t.video, t.renderer)))

    kinds = ("audio", "video")
    async with relayed_call(
        t.audio, t.video, drain_track, seed=5, negotiated=negotiated, transport_cc=kinds
    ) as call:
        try:
            await asyncio.sleep(3.5)
            feedback = loops[0].feedback
            assert feedback is not None and feedback.estimator is not None
            assert feedback.stats.rembs > 0, "the sender's estimator gave nothing"
            onset = t.clock.now()
            call.relay.impair(a_to_b=Impairment(rate_bps=300_000, queue_limit_s=1.0))
            for _ in range(40):
                await asyncio.sleep(0.05)
                if loops[0].controller.index > 0:
                    break
            assert loops[0].controller.index > 0, "the sender did not step down"
            early = [at for at, _, fast in feedback.stats.remb_trace if fast and at >= onset]
            assert early and early[0] - onset < 0.6, list(feedback.stats.remb_trace)[-10:]
            # the same estimates as the receiver's own estimator, a feedback interval later
            ours = [bps for at, bps, fast in feedback.stats.remb_trace if fast and at >= onset]
            theirs = [bps for at, bps, fast in would if fast and at >= onset]
            assert theirs and ours[0] == pytest.approx(theirs[0], rel=0.05)
        finally:
            for running in loops:
                await running.stop()
            for reporter in reporters:
                await reporter.close()


def test_the_answer_offers_transport_cc_only_where_the_offer_did() -> None:
    offer = add_transport_cc(OFFER, kinds=("audio", "video"))
    plain = OFFER.replace("a=group:BUNDLE 0 1\r\n", "")
    answer = negotiate_answer(plain, offer)
    assert transport_cc_id(answer) == transport_cc_id(answer, "video") == 4
    assert negotiate_answer(plain, OFFER) == plain
    assert negotiate_answer(plain, offer, AdaptationOptions(transport_feedback=False)) == plain
