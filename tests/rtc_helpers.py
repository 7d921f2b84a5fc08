"""Helpers for real aiortc peer pairs on loopback (127.0.0.1 only, no STUN/TURN)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aioice.ice
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.aiortc_hooks import offer_loopback_host_address
from media.clock import MediaClock
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack

__all__ = [
    "NoiseRenderer",
    "NoiseTracks",
    "connect_pair",
    "drain_track",
    "loopback_pc",
    "noise_tracks",
    "patch_loopback_ice",
]


def patch_loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice offer 127.0.0.1 as the only host candidate (it leaves loopback out),
    until the test ends."""
    # (set to itself: monkeypatch puts aioice's own back after the test)
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    offer_loopback_host_address(only=True)


def loopback_pc() -> RTCPeerConnection:
    """A peer connection that asks no STUN server."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connect_pair(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer between two in-process peers and wait until both are connected.

    Add tracks/transceivers to the offerer (and set ``answerer.on("track")``) before calling.
    Bound it with ``asyncio.timeout`` where needed (loopback connects in well under 1 s).
    """
    connected = {id(offerer): asyncio.Event(), id(answerer): asyncio.Event()}
    for pc in (offerer, answerer):

        def _watch(pc: RTCPeerConnection = pc) -> None:
            if pc.connectionState == "connected":
                connected[id(pc)].set()

        pc.on("connectionstatechange", _watch)

    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    for ev in connected.values():
        await ev.wait()


class NoiseRenderer:
    """Square frames of fresh noise (expensive to encode: a call sends near its top rung),
    any height, any render rate."""

    fps = 25

    def __init__(self) -> None:
        self.height, self.render_fps = 360, 25
        self._rng = np.random.default_rng(0)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.height, self.height

    def set_output_height(self, height: int) -> None:
        self.height = height

    def set_render_fps(self, fps: int) -> None:
        self.render_fps = fps

    def idle_frames(self) -> list[np.ndarray]:
        shape = (self.height, self.height, 3)
        return [self._rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(8)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        yield self.idle_frames()


@dataclass(frozen=True, slots=True)
class NoiseTracks:
    clock: MediaClock
    renderer: NoiseRenderer
    video: ClockedVideoTrack
    audio: ClockedAudioTrack


def noise_tracks() -> NoiseTracks:
    """A call's clocked tracks on one clock, the video playing NoiseRenderer's idle frames."""
    clock, renderer = MediaClock(), NoiseRenderer()
    player = AvPlayer(clock=clock)
    video = ClockedVideoTrack(player, clock, IdleLoop(renderer.idle_frames()), fps=25)
    return NoiseTracks(clock, renderer, video, ClockedAudioTrack(player, clock))


async def drain_track(track: MediaStreamTrack) -> None:
    """Receive a track until it ends (a receiver that only keeps the media flowing)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
