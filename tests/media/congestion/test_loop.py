"""attach_quality on real aiortc peers through a capped relay: every part follows a step down."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusEncoder

from inference.render.base import FrameRateFollower
from media.aiortc_hooks import sender_encoder
from media.clock import MediaClock
from media.congestion.loop import PeerSession, QualityChange, QualityLoop, attach_quality
from media.congestion.retransmit import RetransmitLimiter
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack
from tests.harness.netem import Impairment, relayed_call
from tests.rtc_helpers import NoiseRenderer, drain_track, patch_loopback_ice


@pytest.mark.timeout(60)
async def test_a_bottleneck_moves_bitrate_rung_fps_and_renderer_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch_loopback_ice(monkeypatch)
    clock = MediaClock()
    renderer = NoiseRenderer()
    assert isinstance(renderer, FrameRateFollower)
    player = AvPlayer(clock=clock)
    video = ClockedVideoTrack(player, clock, IdleLoop(renderer.idle_frames()), fps=25)
    sessions: list[PeerSession] = []
    loops: list[QualityLoop] = []
    changes: list[QualityChange] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        sessions.append(PeerSession(sender, clock, video, renderer))
        loops.append(attach_quality(sessions[0], on_change=changes.append))

    audio = ClockedAudioTrack(player, clock)
    async with relayed_call(audio, video, drain_track, seed=3, negotiated=negotiated) as call:
        try:
            loop = loops[0]
            video_sender = next(
                t.sender for t in call.sender.getTransceivers() if t.kind == "video"
            )
            assert loop.retransmits is not None and "_retransmit" in vars(video_sender)
            assert isinstance(loop.retransmits, RetransmitLimiter)
            await asyncio.sleep(2.0)
            # the video went out through the pacer (audio and RTCP pass it)
            assert loop.pacer is not None and loop.pacer.stats.sent > 20
            # the voice at 32 kbps, and its rate known (it is taken out of REMB)
            assert loop.audio_sender is not None
            voice = sender_encoder(loop.audio_sender)
            assert isinstance(voice, OpusEncoder) and voice.codec.bit_rate == 32_000
            assert "fec" not in voice.codec.options  # aiortc's side does not decode it
            assert 10_000 < loop._audio_bps(clock.now()) < 60_000
            call.relay.impair(a_to_b=Impairment(rate_bps=150_000, queue_limit_s=0.5))

            def settled() -> bool:  # a step down, fully applied (changes come last)
                ctl = loop.controller
                return ctl.index > 0 and loop.changes[-1][1] == ctl.rung

            for _ in range(300):  # the first step down (REMB / RTT / loss), within 15 s
                await asyncio.sleep(0.05)
                if settled():
                    break
            assert settled(), "no step down under a 150 kbps bottleneck"
            rung, index = loop.controller.rung, loop.controller.index
            assert renderer.render_fps == rung.fps == video.fps
            assert renderer.height == min(rung.height, 360)
            above = loop.controller.ladder[index - 1].bitrate
            assert loop.encoder is not None and loop.encoder.bitrate <= above
            assert changes and changes[-1].rung == rung and changes[-1].index == index
        finally:
            for running in loops:
                await running.stop()
