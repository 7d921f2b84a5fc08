"""Blocking stage work of many calls on a few shared threads, shared out fairly.

A process holds one :class:`FairExecutor`; each call takes a :class:`WorkLane` of it and binds
its tasks to the lane (:meth:`WorkLane.bind`). The stages send their blocking work (speech
synthesis, rendering, recognition, cache encoding) through :func:`run_blocking`, which uses
the lane of the running task, or the event loop's default executor outside a call.

A lane runs at most ``per_lane`` jobs at a time. A free worker takes the oldest job of the
ready lane that has used the least worker time lately, so a call that floods the server queues
behind itself, not in front of its neighbours. A job whose awaiting task is cancelled before it
begins (a superseded reply) is dropped at once, never run; closing a lane drops its queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["FairExecutor", "FairExecutorOptions", "LaneClosed", "WorkLane", "run_blocking"]

T = TypeVar("T")

_LANE: contextvars.ContextVar[WorkLane | None] = contextvars.ContextVar("work_lane", default=None)


class LaneClosed(RuntimeError):
    """Work was sent to a lane (or executor) that is closed."""


def _default_workers() -> int:
    return max(2, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FairExecutorOptions:
    """``workers``: threads shared by every lane; ``per_lane``: jobs one lane may run at once;
    ``half_life_s``: how fast a lane's recorded use is forgotten."""

    workers: int = field(default_factory=_default_workers)
    per_lane: int = 1
    half_life_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be within 1..256, got {self.workers}")
        if not 1 <= self.per_lane <= self.workers:
            raise ValueError(f"per_lane must be within 1..workers, got {self.per_lane}")
        if not self.half_life_s > 0:
            raise ValueError(f"half_life_s must be positive, got {self.half_life_s}")


@dataclass(slots=True)
class _Job:
    future: Future[Any]
    fn: Callable[[], Any]


@dataclass(slots=True)
class _LaneState:
    jobs: deque[_Job] = field(default_factory=deque)
    running: int = 0
    used: float = 0.0  # worker seconds, decayed to ``stamp``
    stamp: float = 0.0
    closed: bool = False

    def use_at(self, now: float, half_life_s: float) -> float:
        return self.used * math.exp2(-(now - self.stamp) / half_life_s)


class FairExecutor:
    """Worker threads shared by lanes, fairly (see the module docstring). Thread-safe."""

    def __init__(
        self,
        options: FairExecutorOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or FairExecutorOptions()
        self._clock = clock
        self._cond = threading.Condition()
        self._lanes: dict[str, _LaneState] = {}
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    def lane(self, name: str) -> WorkLane:
        """A new lane (a name in use gets a fresh lane once the old one is closed)."""
        with self._cond:
            if self._shutdown:
                raise LaneClosed("the executor is shut down")
            if name in self._lanes:
                raise ValueError(f"lane {name!r} is open already")
            self._lanes[name] = _LaneState(stamp=self._clock())
        return WorkLane(self, name)

    def submit(self, lane: str, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` on ``lane``; cancel the future to drop it before it starts."""
        future: Future[T] = Future()
        with self._cond:
            state = self._lanes.get(lane)
            if self._shutdown or state is None or state.closed:
                raise LaneClosed(f"lane {lane!r} is closed")
            state.jobs.append(_Job(future, fn))
            self._start_worker()
            self._cond.notify()
        future.add_done_callback(functools.partial(self._forget, lane))
        return future

    def pending(self, lane: str) -> tuple[int, int]:
        """(queued, running) jobs of ``lane``."""
        with self._cond:
            state = self._lanes.get(lane)
            return (0, 0) if state is None else (len(state.jobs), state.running)

    def close_lane(self, lane: str) -> None:
        """Drop the lane's queued jobs (cancelled) and forget it once its running ones end."""
        with self._cond:
            state = self._lanes.get(lane)
            if state is None:
                return
            state.closed = True
            dropped = list(state.jobs)
            state.jobs.clear()
            if state.running == 0:
                del self._lanes[lane]
        for job in dropped:
            job.future.cancel()

    def shutdown(self) -> None:
        """Close every lane and stop the workers (running jobs finish first)."""
        with self._cond:
            self._shutdown = True
            names = list(self._lanes)
        for name in names:
            self.close_lane(name)
        with self._cond:
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    # ---- workers ------------------------------------------------------------------------
    def _start_worker(self) -> None:
        """A worker more, up to ``workers``, while jobs wait (under the lock)."""
        if len(self._threads) >= self.options.workers:
            return
        thread = threading.Thread(
            target=self._work, name=f"lane-worker-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _forget(self, lane: str, future: Future[Any]) -> None:
        """A job cancelled while queued leaves its queue at once."""
        if not future.cancelled():
            return
        with self._cond:
            state = self._lanes.get(lane)
            if state is not None:
                for job in state.jobs:
                    if job.future is future:
                        state.jobs.remove(job)
                        break

    def _next(self) -> tuple[str, _Job] | None:
        """The job to run next (under the lock): the least-used ready lane's oldest."""
        now = self._clock()
        best: tuple[float, str] | None = None
        for name, state in self._lanes.items():
            if state.jobs and state.running < self.options.per_lane:
                use = state.use_at(now, self.options.half_life_s)
                if best is None or use < best[0]:
                    best = (use, name)
        if best is None:
            return None
        return best[1], self._lanes[best[1]].jobs.popleft()

    def _work(self) -> None:
        while True:
            with self._cond:
                while (picked := self._next()) is None and not self._shutdown:
                    self._cond.wait()
                if picked is None:
                    return
                name, job = picked
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled between its callback and now
                state = self._lanes[name]
                state.running += 1
            began = self._clock()
            try:
                job.future.set_result(job.fn())
            except BaseException as exc:  # handed to the awaiting task, never lost
                job.future.set_exception(exc)
            self._done(name, began)

    def _done(self, name: str, began: float) -> None:
        with self._cond:
            state = self._lanes[name]
            now = self._clock()
            state.used = state.use_at(now, self.options.half_life_s) + (now - began)
            state.stamp = now
            state.running -= 1
            if state.closed and state.running == 0:
                del self._lanes[name]
            self._cond.notify_all()


class WorkLane:
    """One call's share of a :class:`FairExecutor` (cheap; made by :meth:`FairExecutor.lane`)."""

    def __init__(self, executor: FairExecutor, name: str) -> None:
        self.executor = executor
        self.name = name

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` on a worker; cancelling the caller before it starts drops it."""
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args)
        return await asyncio.wrap_future(self.executor.submit(self.name, call))

    def bind(self, coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """``coro`` run with this lane as the lane of its task (and of tasks it creates)."""
        return _bound(self, coro)

    def pending(self) -> tuple[int, int]:
        """(queued, running) jobs of this lane."""
        return self.executor.pending(self.name)

    def close(self) -> None:
        """Drop the queued jobs; later work is refused with :class:`LaneClosed`."""
        self.executor.close_lane(self.name)


async def _bound(lane: WorkLane, coro: Coroutine[Any, Any, T]) -> T:
    _LANE.set(lane)  # this task's own context: other tasks are not affected
    return await coro


def current_lane() -> WorkLane | None:
    """The lane the running task is bound to (None outside a call)."""
    return _LANE.get()


async def run_blocking(fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)`` off the event loop: on the running task's lane when it has one, else on
    the loop's default executor (as :func:`asyncio.to_thread`)."""
    lane = _LANE.get()
    if lane is None:
        return await asyncio.to_thread(fn, *args)
    return await lane.run(fn, *args)
