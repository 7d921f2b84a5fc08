"""QualityLoop.limit on real aiortc peers: a limit holds the call at a lower rung (fps,
size, bitrate, renderer) whatever the network allows, and lifting it hands back."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection

from media.clock import MediaClock
from media.congestion.loop import PeerSession, QualityChange, QualityLoop, attach_quality
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack
from tests.harness.netem import relayed_call
from tests.rtc_helpers import NoiseRenderer, drain_track, patch_loopback_ice


async def _until(check: object, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if callable(check) and check():
            return True
        await asyncio.sleep(0.05)
    return bool(callable(check) and check())


@pytest.mark.timeout(60)
async def test_a_limit_holds_the_call_at_a_lower_rung_until_lifted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch_loopback_ice(monkeypatch)
    clock = MediaClock()
    renderer = NoiseRenderer()
    player = AvPlayer(clock=clock)
    video = ClockedVideoTrack(player, clock, IdleLoop(renderer.idle_frames()), fps=25)
    loops: list[QualityLoop] = []
    changes: list[QualityChange] = []

    def negotiated(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
        session = PeerSession(sender, clock, video, renderer)
        loops.append(attach_quality(session, on_change=changes.append))

    audio = ClockedAudioTrack(player, clock)
    async with relayed_call(audio, video, drain_track, seed=5, negotiated=negotiated):
        loop = loops[0]
        try:
            await asyncio.sleep(0.5)
            with pytest.raises(ValueError, match="outside the ladder"):
                loop.limit(len(loop.controller.ladder))
            low = len(loop.controller.ladder) - 2
            floor = loop.controller.ladder[low]
            loop.limit(low, "over its CPU share")
            assert await _until(lambda: changes and changes[-1].index >= low)
            # the limit's own change, unless the controller went as low by itself (this
            # machine's load can make it)
            reasons = [c.reason for c in changes]
            assert "over its CPU share" in reasons or loop.controller.index >= low, changes
            assert loop.rung.fps <= floor.fps and video.fps == loop.rung.fps
            assert renderer.render_fps == loop.rung.fps
            assert renderer.height <= floor.height
            assert loop.encoder is not None and loop.encoder.bitrate <= floor.bitrate
            # held there while the controller would go higher
            await asyncio.sleep(1.0)
            assert loop.rung.fps <= floor.fps and loop.encoder.bitrate <= floor.bitrate
            # lifted: the controller's own rung is in force again
            loop.limit(None)
            assert await _until(lambda: loop.rung == loop.controller.rung)
            assert renderer.render_fps == video.fps == loop.controller.rung.fps
        finally:
            await loop.stop()
