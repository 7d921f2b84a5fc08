"""How deep the bottleneck queue toward the peer is, from STUN pings on the call's ICE pair.

A severe congestion signal makes :class:`.controller.QualityController` ask for a *drain*:
video pauses (voice goes on) so the bottleneck queue empties instead of delaying every later
frame. The controller cannot see the queue: its ``drain_s`` (1 s) is a guess, and a pause
that long whatever the depth makes every drain a second-long freeze, also for a 100 ms queue.

Every WebRTC endpoint answers STUN binding requests on its selected candidate pair (ICE
consent freshness, RFC 7675: aioice itself sends one every ~5 s, browsers too). Such a
request leaves on the media's 5-tuple, so it waits in the same bottleneck queue, behind the
video sent before it; the answer comes back on the other direction. A ping's round trip
minus the smallest one seen is the queue it waited behind.

:class:`QueueProbe` keeps that baseline (a ping every ``baseline_interval_s``, ~100 bytes)
and :meth:`QueueProbe.wait_drained` pings every ``interval_s`` until a ping sent after it
began comes back within ``margin_s`` of the baseline: the queue ahead of that ping is gone,
so video can resume. :func:`ice_ping` is the ping of an aiortc peer connection; the probe
itself takes any ``Ping`` (tests give it a fake one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aioice import Connection
from aiortc import RTCPeerConnection

from media.aiortc_hooks import ice_connection, selected_pair

__all__ = ["Ping", "ProbeStats", "QueueProbe", "ice_ping"]

log = logging.getLogger(__name__)

Ping = Callable[[float], Awaitable[None]]
"""Sends one ping and returns when it is answered; raises on a timeout (the argument, s)."""


@dataclass(slots=True)
class ProbeStats:
    pings: int = 0
    answered: int = 0
    failed: int = 0  # timed out or could not be sent
    drained: int = 0  # wait_drained saw the queue empty before its deadline
    undrained: int = 0  # ... or reached its deadline


class QueueProbe:
    """Bottleneck queue depth from ping round trips; :meth:`close` stops the baseline pings."""

    def __init__(
        self,
        ping: Ping,
        *,
        interval_s: float = 0.04,
        margin_s: float = 0.04,
        timeout_s: float = 1.5,
        baseline_interval_s: float = 1.0,
        baseline_window_s: float = 30.0,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < interval_s <= baseline_interval_s:
            raise ValueError("need 0 < interval_s <= baseline_interval_s")
        if margin_s <= 0 or timeout_s <= 0 or baseline_window_s < baseline_interval_s:
            raise ValueError("need margin_s > 0, timeout_s > 0, baseline_window_s >= interval")
        self._ping = ping
        self.interval_s, self.margin_s, self.timeout_s = interval_s, margin_s, timeout_s
        self.baseline_interval_s, self.baseline_window_s = baseline_interval_s, baseline_window_s
        self._time = time_fn
        self._rtts: deque[tuple[float, float]] = deque()  # (answered at, rtt)
        self._task: asyncio.Task[None] | None = None
        self.stats = ProbeStats()

    @property
    def baseline(self) -> float | None:
        """The smallest round trip of the window (the path without a queue), if any."""
        cutoff = self._time() - self.baseline_window_s
        while self._rtts and self._rtts[0][0] < cutoff:
            self._rtts.popleft()
        return min((r for _, r in self._rtts), default=None)

    def queue_s(self, rtt: float) -> float | None:
        """The queue a ping with round trip ``rtt`` waited behind (None: no baseline yet)."""
        base = self.baseline
        return None if base is None else max(0.0, rtt - base)

    async def rtt(self) -> float | None:
        """One ping's round trip (s), None when it failed; answered ones feed the baseline."""
        self.stats.pings += 1
        sent = self._time()
        try:
            await self._ping(self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout, a closed transport: no answer is no sample
            self.stats.failed += 1
            log.debug("queue probe ping failed: %r", exc)
            return None
        now = self._time()
        self.stats.answered += 1
        self._rtts.append((now, now - sent))
        return now - sent

    def start(self) -> None:
        """Ping every ``baseline_interval_s`` in the background (keeps the baseline fresh)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._keep_baseline())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep_baseline(self) -> None:
        while True:
            await self.rtt()
            await asyncio.sleep(self.baseline_interval_s)

    async def wait_drained(self, deadline_s: float) -> bool:
        """Ping every ``interval_s`` until one comes back with no queue ahead of it (True), or
        ``deadline_s`` passes (False). Without a baseline it waits for the deadline: a
        round trip alone cannot tell a queue from a long path."""
        if deadline_s <= 0:
            return False
        base = self.baseline  # from before the drain: its own pings see a falling queue
        if base is None:
            await asyncio.sleep(deadline_s)
            self.stats.undrained += 1
            return False
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pings: set[asyncio.Task[None]] = set()

        async def one() -> None:
            rtt = await self.rtt()
            if rtt is not None and rtt - base <= self.margin_s and not done.done():
                done.set_result(True)

        async def launch() -> None:
            while True:  # pings go out while earlier ones still wait in the queue
                task = asyncio.ensure_future(one())
                pings.add(task)
                task.add_done_callback(pings.discard)
                await asyncio.sleep(self.interval_s)

        launcher = asyncio.ensure_future(launch())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), deadline_s)
        finally:
            for task in (launcher, *pings):
                task.cancel()
            await asyncio.gather(launcher, *pings, return_exceptions=True)
        drained = done.done()
        if drained:
            self.stats.drained += 1
        else:
            self.stats.undrained += 1
        return drained


def ice_ping(pc: RTCPeerConnection) -> Ping:
    """The STUN binding request (an RFC 7675 consent check) of ``pc``'s selected ICE pair."""

    def connection() -> Connection:
        for transceiver in pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is not None:
                return ice_connection(dtls)
        raise ConnectionError("the call has no transport yet")

    async def ping(timeout_s: float) -> None:
        conn = connection()
        pair = selected_pair(conn)
        if pair is None or conn.remote_password is None:
            raise ConnectionError("no selected ICE pair")
        request = conn.build_request(pair, nominate=False)
        # one retransmission after 0.5 s (aioice's RTO): a ping dropped by a full queue is
        # answered late rather than never; the round trip still counts from the first send
        async with asyncio.timeout(timeout_s):
            await pair.protocol.request(
                request,
                pair.remote_addr,
                integrity_key=conn.remote_password.encode("utf8"),
                retransmissions=1,
            )

    return ping
