"""Network impairment harness for tests and benchmarks: a userspace UDP relay on loopback.

:class:`UdpRelay` sits between two peers. Each direction is a :class:`Link` with a one-way
delay, uniform jitter, random loss and a token-bucket bandwidth cap whose queue is bounded in
time (tail drop past ``queue_limit_s``, like ``tc tbf``'s ``latency``). Impairments can be
changed while running (a bottleneck that lifts). Everything binds to 127.0.0.1 only.

WebRTC peers find each other through the candidates in their SDP, so a harness that wants
their traffic to cross the relay rewrites those candidates (:func:`rewrite_candidates`,
:func:`connect_via_relay`). That is test/bench plumbing: product code never rewrites SDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

__all__ = [
    "Impairment",
    "Link",
    "LinkStats",
    "UdpRelay",
    "candidate_port",
    "connect_via_relay",
    "relayed_call",
    "rewrite_candidates",
]

Addr = tuple[str, int]
_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Impairment:
    """One direction's impairment. ``rate_bps=None`` is an unlimited link."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    rate_bps: float | None = None
    burst_bytes: int = 10_000
    queue_limit_s: float = 0.5

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must be >= 0")
        if self.jitter_s > self.delay_s:
            raise ValueError(f"jitter_s ({self.jitter_s}) cannot exceed delay_s ({self.delay_s})")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be within [0, 1), got {self.loss}")
        if self.rate_bps is not None and self.rate_bps < 8_000:
            raise ValueError(f"rate_bps must be >= 8 kbps or None, got {self.rate_bps}")
        if self.burst_bytes < 1500 or self.queue_limit_s <= 0:
            raise ValueError("burst_bytes must be >= 1500 and queue_limit_s positive")


@dataclass(slots=True)
class LinkStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    lost: int = 0  # random loss
    queue_drops: int = 0  # bottleneck queue over its time limit
    max_queue_s: float = 0.0


@dataclass(slots=True)
class Link:
    """One direction: decides when (or whether) each packet is delivered. Pure: takes ``now``."""

    impairment: Impairment = field(default_factory=Impairment)
    seed: int = 0
    stats: LinkStats = field(default_factory=LinkStats)
    _rng: random.Random = field(init=False)
    _tokens: float = field(init=False, default=0.0)
    _t_tokens: float | None = field(init=False, default=None)
    _busy_until: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._tokens = float(self.impairment.burst_bytes)

    def set(self, impairment: Impairment) -> None:
        """Change the impairment; packets already scheduled keep their times."""
        self.impairment = impairment
        self._tokens = min(self._tokens, float(impairment.burst_bytes))

    def delivery_time(self, now: float, size: int) -> float | None:
        """When a ``size``-byte packet arriving at ``now`` leaves the link (None: dropped)."""
        imp = self.impairment
        self.stats.packets_in += 1
        if imp.loss and self._rng.random() < imp.loss:
            self.stats.lost += 1
            return None
        depart = now
        if imp.rate_bps is not None:
            rate = imp.rate_bps / 8  # bytes per second
            if self._busy_until > now:  # a queue: the bucket is empty when it drains
                depart = self._busy_until + size / rate
            else:
                last = self._t_tokens if self._t_tokens is not None else now
                self._tokens = min(imp.burst_bytes, self._tokens + (now - last) * rate)
                if self._tokens >= size:
                    self._tokens -= size
                else:
                    depart = now + (size - self._tokens) / rate
                    self._tokens = 0.0
            wait = depart - now
            if wait > imp.queue_limit_s:
                self.stats.queue_drops += 1
                return None
            if depart > now:
                self._busy_until = depart
                self._tokens = 0.0
                self._t_tokens = depart
            else:
                self._t_tokens = now
            self.stats.max_queue_s = max(self.stats.max_queue_s, wait)
        delay = imp.delay_s
        if imp.jitter_s:
            delay += self._rng.uniform(-imp.jitter_s, imp.jitter_s)
        self.stats.packets_out += 1
        self.stats.bytes_out += size
        return depart + delay


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, name: str) -> None:
        self.relay, self.name = relay, name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.relay._received(self.name, data, addr)


class UdpRelay:
    """A UDP relay on 127.0.0.1 with one socket facing each peer.

    Peer A sends to ``a_port`` (A's view of B); the relay forwards through ``b_port`` to B's
    real address, so B sees A at ``b_port``. ``a_to_b`` impairs what A sends, ``b_to_a`` what B
    sends. Targets may be set after ``start`` (once both peers' real ports are known).
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.a_to_b = Link(seed=seed)
        self.b_to_a = Link(seed=seed + 1)
        self._sides: dict[str, _Side] = {}
        self._targets: dict[str, Addr | None] = {"a": None, "b": None}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, int] = {}  # per direction: packets scheduled, not yet sent
        self._last_at: dict[str, float] = {}  # ... and the latest time scheduled

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        for name in ("a", "b"):
            _, proto = await loop.create_datagram_endpoint(
                functools.partial(_Side, self, name), local_addr=(_LOOPBACK, 0)
            )
            self._sides[name] = proto

    def _port(self, name: str) -> int:
        side = self._sides.get(name)
        if side is None or side.transport is None:
            raise RuntimeError("the relay is not started")
        return int(side.transport.get_extra_info("sockname")[1])

    @property
    def a_port(self) -> int:
        """The port peer A sends to."""
        return self._port("a")

    @property
    def b_port(self) -> int:
        """The port peer B sends to."""
        return self._port("b")

    def set_targets(self, *, a: Addr | None = None, b: Addr | None = None) -> None:
        """Real addresses of peer A and peer B (loopback only)."""
        for name, addr in (("a", a), ("b", b)):
            if addr is not None:
                if addr[0] != _LOOPBACK:
                    raise ValueError(f"the relay only forwards to {_LOOPBACK}, got {addr[0]}")
                self._targets[name] = addr

    def impair(self, *, a_to_b: Impairment | None = None, b_to_a: Impairment | None = None) -> None:
        """Change either direction's impairment now."""
        if a_to_b is not None:
            self.a_to_b.set(a_to_b)
        if b_to_a is not None:
            self.b_to_a.set(b_to_a)

    def _received(self, side: str, data: bytes, addr: Addr) -> None:
        loop = self._loop
        assert loop is not None
        if side == "a":
            link, out, target = self.a_to_b, self._sides["b"], self._targets["b"]
            if self._targets["a"] is None:
                self._targets["a"] = addr
        else:
            link, out, target = self.b_to_a, self._sides["a"], self._targets["a"]
            if self._targets["b"] is None:
                self._targets["b"] = addr
        if target is None:
            return
        now = loop.time()
        at = link.delivery_time(now, len(data))
        if at is None:
            return
        transport = out.transport
        if transport is None:
            return
        # a link without jitter keeps the order: a packet due now still waits for the ones
        # scheduled before it (a busy event loop runs their timers late)
        if not link.impairment.jitter_s and side in self._last_at:
            at = max(at, self._last_at[side] + 1e-6)  # (timers due at once run in any order)
        if at <= now and not self._pending.get(side):
            transport.sendto(data, target)
            return
        self._pending[side] = self._pending.get(side, 0) + 1
        self._last_at[side] = at
        loop.call_at(at, self._send, side, transport, data, target)

    def _send(
        self, side: str, transport: asyncio.DatagramTransport, data: bytes, target: Addr
    ) -> None:
        self._pending[side] -= 1
        if not transport.is_closing():
            transport.sendto(data, target)

    def close(self) -> None:
        for side in self._sides.values():
            if side.transport is not None:
                side.transport.close()
        self._sides.clear()


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( .*)$", re.I | re.M)
_MLINE = re.compile(r"^(m=\w+ )(\d+)( .*)$", re.M)


def candidate_port(sdp: str) -> int:
    """The port of the (first) 127.0.0.1 UDP candidate in ``sdp``."""
    m = _CANDIDATE.search(sdp)
    if m is None:
        raise ValueError("the SDP has no 127.0.0.1 UDP candidate")
    return int(m.group(2))


def rewrite_candidates(sdp: str, port: int) -> str:
    """Point every 127.0.0.1 UDP candidate (and the m-line ports) of ``sdp`` at ``port``."""
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    candidate_port(sdp)
    sdp = _CANDIDATE.sub(lambda m: f"{m.group(1)}{port}{m.group(3)}", sdp)
    return _MLINE.sub(lambda m: f"{m.group(1)}{port if m.group(2) != '0' else 0}{m.group(3)}", sdp)


async def connect_via_relay(
    offerer: Any,
    answerer: Any,
    relay: UdpRelay,
    *,
    negotiated: Callable[[], None] | None = None,
    transport_cc: tuple[str, ...] = (),
) -> None:
    """Offer/answer between two in-process aiortc peers so all traffic crosses ``relay``.

    The offerer is peer A, the answerer peer B. Add tracks and handlers first; ICE with only
    127.0.0.1 host candidates (see ``tests.rtc_helpers.patch_loopback_ice``). ``negotiated``
    is called once both descriptions are set, before media flows. ``transport_cc``
    negotiates transport-wide sequence numbers on those kinds of media, as a browser would
    (:func:`media.congestion.twcc.add_transport_cc`). Returns when both are connected; bound it with
    ``asyncio.timeout``.
    """
    from aiortc import RTCSessionDescription

    from media.congestion.twcc import add_transport_cc

    connected = [asyncio.Event(), asyncio.Event()]
    for pc, ev in zip((offerer, answerer), connected, strict=True):

        def _watch(pc: Any = pc, ev: asyncio.Event = ev) -> None:
            if pc.connectionState == "connected":
                ev.set()

        pc.on("connectionstatechange", _watch)
    offer = await offerer.createOffer()
    if transport_cc:
        offer = RTCSessionDescription(
            sdp=add_transport_cc(offer.sdp, kinds=transport_cc), type="offer"
        )
    await offerer.setLocalDescription(offer)
    offer = offerer.localDescription
    relay.set_targets(a=(_LOOPBACK, candidate_port(offer.sdp)))
    await answerer.setRemoteDescription(
        RTCSessionDescription(sdp=rewrite_candidates(offer.sdp, relay.b_port), type="offer")
    )
    answer = await answerer.createAnswer()
    if transport_cc:
        answer = RTCSessionDescription(
            sdp=add_transport_cc(answer.sdp, offer=offer.sdp, kinds=transport_cc), type="answer"
        )
    await answerer.setLocalDescription(answer)
    answer = answerer.localDescription
    relay.set_targets(b=(_LOOPBACK, candidate_port(answer.sdp)))
    await offerer.setRemoteDescription(
        RTCSessionDescription(sdp=rewrite_candidates(answer.sdp, relay.a_port), type="answer")
    )
    if negotiated is not None:
        negotiated()
    for ev in connected:
        await ev.wait()


@dataclass(slots=True)
class RelayedCall:
    """Two connected in-process peers whose traffic crosses ``relay`` (see below)."""

    sender: Any
    receiver: Any
    relay: UdpRelay


@contextlib.asynccontextmanager
async def relayed_call(
    audio: Any,
    video: Any,
    on_track: Callable[[Any], Awaitable[None]],
    *,
    seed: int = 0,
    negotiated: Callable[[Any, Any], None] | None = None,
    connect_timeout_s: float = 20.0,
    transport_cc: tuple[str, ...] = (),
) -> AsyncIterator[RelayedCall]:
    """A call's media plane through a fresh :class:`UdpRelay`: the sender plays ``audio``
    (on a sendrecv transceiver, as a call does) and ``video``; every track the receiver gets
    is handed to ``on_track`` as a task. ``negotiated(sender, receiver)`` runs once both
    descriptions are set, before media flows. On exit the tasks are cancelled and the peers
    and the relay closed (stop what uses the peers, e.g. quality loops, inside the block).
    """
    from aiortc import RTCConfiguration, RTCPeerConnection

    cfg = RTCConfiguration(iceServers=[])
    sender, receiver = RTCPeerConnection(cfg), RTCPeerConnection(cfg)
    sender.addTransceiver("audio", direction="sendrecv")
    sender.getTransceivers()[0].sender.replaceTrack(audio)
    sender.addTrack(video)
    tasks: list[asyncio.Task[None]] = []
    receiver.on("track", lambda tr: tasks.append(asyncio.ensure_future(on_track(tr))))
    relay = UdpRelay(seed=seed)
    await relay.start()
    try:
        hook = None if negotiated is None else functools.partial(negotiated, sender, receiver)
        async with asyncio.timeout(connect_timeout_s):
            await connect_via_relay(
                sender, receiver, relay, negotiated=hook, transport_cc=transport_cc
            )
        yield RelayedCall(sender, receiver, relay)
    finally:
        for task in tasks:
            task.cancel()
        await sender.close()
        await receiver.close()
        relay.close()
