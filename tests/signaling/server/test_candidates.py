"""ICE candidates of an offer: only the caller's plausible addresses, at most a few."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from signaling.config import Settings
from signaling.ice import enable_loopback_candidates
from signaling.server.app import create_app
from signaling.server.candidates import filter_candidates, plausible_address
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
PUBLIC_PEER = "93.184.216.34"


def when_connected(pc: RTCPeerConnection) -> asyncio.Event:
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    return connected


def candidate(address: str, port: int = 50000, transport: str = "udp") -> str:
    return f"a=candidate:1 1 {transport} 2130706431 {address} {port} typ host\r\n"


def offer(*candidates: str, end: bool = True) -> str:
    tail = "a=end-of-candidates\r\n" if end else ""
    return "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "".join(candidates) + tail


def test_a_public_caller_may_list_only_its_own_address() -> None:
    assert plausible_address(PUBLIC_PEER, PUBLIC_PEER)
    for other in ("8.8.8.8", "10.0.0.2", "192.168.1.5", "127.0.0.1", "fe80::1", "x.local"):
        assert not plausible_address(other, PUBLIC_PEER), other
    assert plausible_address("2001:db8::5", "2001:db8::5")


def test_a_caller_nearby_may_list_its_networks() -> None:
    for ok in ("127.0.0.1", "10.1.2.3", "192.168.1.5", "172.16.0.9", "fe80::1", "::1", "A1.local"):
        assert plausible_address(ok, "127.0.0.1"), ok
    assert plausible_address("192.168.1.5", "::ffff:127.0.0.1")
    assert plausible_address("10.0.0.7", "192.168.1.20")  # a LAN caller
    assert not plausible_address("127.0.0.1", "192.168.1.20")  # our loopback is not its
    for bad in ("8.8.8.8", "224.0.0.251", "ff02::1", "255.255.255.255", "0.0.0.0", "0.1.2.3"):
        assert not plausible_address(bad, "127.0.0.1"), bad
    assert not plausible_address("evil.example", "127.0.0.1")
    assert not plausible_address("127.0.0.1", "unknown")


def test_filter_caps_destinations_and_counts_what_it_drops() -> None:
    flood = [candidate(f"8.8.{i // 250}.{i % 250}", 9000 + i) for i in range(300)]
    mine = [candidate("127.0.0.1", 40000 + i) for i in range(20)]
    sdp = offer(*mine[:2], *flood, *mine[2:])
    filtered = filter_candidates(sdp, peer_ip="127.0.0.1", max_candidates=8)
    assert (filtered.kept, filtered.dropped) == (8, 312)
    assert filtered.sdp.count("a=candidate:") == 8 and "8.8." not in filtered.sdp
    assert "a=end-of-candidates" not in filtered.sdp  # the caller's own checks still teach us
    again = filter_candidates(sdp + mine[0], peer_ip="127.0.0.1", max_candidates=8)
    assert again.kept == 9  # a destination already kept (another m-line) costs nothing


def test_filter_keeps_an_honest_offer_as_it_is() -> None:
    sdp = offer(candidate("127.0.0.1"), candidate("192.168.1.5"), candidate("abc.local"))
    filtered = filter_candidates(sdp, peer_ip="127.0.0.1", max_candidates=16)
    assert filtered.sdp == sdp and (filtered.kept, filtered.dropped) == (3, 0)
    broken = offer("a=candidate:1 1 udp 1 127.0.0.1 notaport typ host\r\n", "a=candidate:x\r\n")
    assert filter_candidates(broken, peer_ip="127.0.0.1", max_candidates=16).dropped == 2


async def test_a_flooded_offer_is_answered_with_its_plausible_candidates(
    settings: Settings,
    fake_services: Services,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await serve(create_app(settings, services=fake_services))
    enable_loopback_candidates()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    at = sdp.index("a=candidate:")
    flood = "".join(candidate(f"8.8.{i // 250}.{i % 250}", 9000 + i) for i in range(300))
    with caplog.at_level(logging.INFO, logger="signaling.server.app"):
        async with aiohttp.ClientSession() as http:
            body = {"sdp": sdp[:at] + flood + sdp[at:], "type": "offer"}
            async with http.post(url + "/offer", json=body) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
    assert "dropped 300 of" in caplog.text
    connected = when_connected(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await asyncio.wait_for(connected.wait(), 10)  # its real candidates still connect
    await pc.close()


async def test_a_caller_whose_candidates_are_all_dropped_still_connects() -> None:
    """Behind a reverse proxy every caller looks like loopback, so a caller's public
    candidates are dropped: the server learns its address from the caller's own checks."""
    enable_loopback_candidates()
    caller, server = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    caller.addTransceiver("audio", direction="sendrecv")
    await caller.setLocalDescription(await caller.createOffer())
    filtered = filter_candidates(
        caller.localDescription.sdp, peer_ip=PUBLIC_PEER, max_candidates=16
    )
    assert filtered.kept == 0 and filtered.dropped > 0
    await server.setRemoteDescription(RTCSessionDescription(sdp=filtered.sdp, type="offer"))
    await server.setLocalDescription(await server.createAnswer())
    connected = when_connected(server)
    await caller.setRemoteDescription(server.localDescription)
    try:
        await asyncio.wait_for(connected.wait(), 10)
    finally:
        await asyncio.gather(caller.close(), server.close())
