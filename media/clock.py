"""The media clock of one call.

One :class:`MediaClock` per call is shared by the outgoing audio track, the outgoing video
track and the session, so every timestamp of the call is on one timeline: seconds since the
call started, from one monotonic time source. Tests inject a fake time source, or use
:class:`ManualClock`, whose sleepers wake only when the test advances it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

__all__ = ["ManualClock", "MediaClock"]


class MediaClock:
    """Seconds since the call started, from an injectable monotonic time function.

    ``time_fn`` must be monotonic (never go backwards); ``time.monotonic`` by default.
    The origin is taken when the clock is created.
    """

    def __init__(self, *, time_fn: Callable[[], float] = time.monotonic) -> None:
        self._time_fn = time_fn
        self._origin = time_fn()

    def now(self) -> float:
        """Seconds since the call started."""
        return self._time_fn() - self._origin

    async def sleep_until(self, t: float) -> None:
        """Sleep until clock time ``t``; returns at once (after yielding) if it is past."""
        delay = t - self.now()
        await asyncio.sleep(delay if delay > 0 else 0)


class ManualClock(MediaClock):
    """A clock that moves only when told to: for tests that drive time directly.

    ``sleep_until`` waits until :meth:`advance` (or :meth:`set`) moves the clock to or past
    the wake-up time; sleepers are woken in time order.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        super().__init__(time_fn=lambda: self._t)
        self._origin = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def set(self, t: float) -> None:
        """Move the clock to ``t`` (never backwards) and wake the sleepers that are due."""
        if t < self._t:
            raise ValueError(f"ManualClock cannot go backwards ({t} < {self._t})")
        self._t = float(t)
        while self._sleepers and self._sleepers[0][0] <= self._t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, dt: float) -> None:
        """Move the clock forward by ``dt`` seconds."""
        if dt < 0:
            raise ValueError(f"ManualClock.advance needs dt >= 0, got {dt}")
        self.set(self._t + dt)

    @property
    def sleepers(self) -> int:
        """How many coroutines are waiting in ``sleep_until``."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def sleep_until(self, t: float) -> None:
        if t <= self._t:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t, next(self._seq), fut))
        await fut
