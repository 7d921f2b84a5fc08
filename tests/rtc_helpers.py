"""Helpers for real aiortc peer pairs on loopback (127.0.0.1 only, no STUN/TURN)."""

from __future__ import annotations

import asyncio

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

__all__ = ["connect_pair", "loopback_pc", "patch_loopback_ice"]


def patch_loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice offer 127.0.0.1 as the only host candidate (it leaves loopback out)."""

    def _loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    monkeypatch.setattr(aioice.ice, "get_host_addresses", _loopback)


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
