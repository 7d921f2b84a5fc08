"""Blocking stage work of many calls on a few shared threads, each call held to its share.

A process holds one :class:`FairExecutor`; each call takes a :class:`WorkLane` of it and runs
its tasks on the lane (:meth:`WorkLane.create_task`). The stages send their blocking work
(speech synthesis, rendering, recognition, cache encoding) through :func:`run_blocking`, which
uses the lane of the running task, or the event loop's default executor outside a call.

A lane runs at most ``per_lane`` jobs at a time (two: a reply's next sentence is synthesised
while the current one is rendered). Each lane has a budget of worker time: it earns ``share``
worker-seconds per second up to ``burst_s`` and spends what its jobs take. A free worker takes
the oldest job of the lane with the most budget left. A lane low on budget (under
``background_below_s``) runs on background workers at a lower OS priority (nice, on Linux),
which get only the CPU that calls within their share and the media leave; a lane that has
spent all of it runs there too, after every lane with budget left (``debt_waits``: it waits
instead until it has earned some back, even while workers are free), so a call alone on an
idle server is never held up by its own earlier work; the last free worker
(``reserve``) takes only a lane with half its burst or more left, so a quiet call's reply
starts at once beside busy calls' long jobs. So a call that keeps the server busy (a flood of
superseded replies) gets its share, at the back. A *background* lane (``lane(name,
background=True)``: work a call may want but never waits for, such as speculation) runs only
on the background workers, whatever its budget, so it never holds a worker or a slot that a
call's own replies need. A job whose
awaiting task is cancelled before it begins (a superseded reply) is dropped at once, never
run; closing a lane drops its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "FairExecutor",
    "FairExecutorOptions",
    "LaneClosed",
    "WorkLane",
    "current_lane",
    "on_background_worker",
    "run_blocking",
]

T = TypeVar("T")

_LANE: contextvars.ContextVar[WorkLane | None] = contextvars.ContextVar("work_lane", default=None)


class _WorkerKind(threading.local):
    background = False  # the calling thread is a background (niced) worker


_WORKER = _WorkerKind()


class LaneClosed(RuntimeError):
    """Work was sent to a lane (or executor) that is closed."""


def _default_workers() -> int:
    """A thread per core and two more, so a short job (a batch of frames) starts at once
    beside long ones (a sentence's synthesis) instead of waiting for one to end."""
    return (os.cpu_count() or 1) + 2


@dataclass(frozen=True, slots=True, kw_only=True)
class FairExecutorOptions:
    """``workers``: threads shared by every lane; ``per_lane``: jobs one lane may run at once;
    ``share``: worker-seconds a lane earns per second; ``burst_s``: the most it can save up;
    lanes with less than ``background_below_s`` left run on ``background_workers`` threads at
    nice ``background_nice``; the last ``reserve`` free workers take only lanes with half
    their burst or more left (a quiet call's reply starts at once beside busy ones); with
    ``debt_waits`` a lane in debt waits to earn budget back instead of running at the back."""

    workers: int = field(default_factory=_default_workers)
    per_lane: int = 2
    share: float = 0.25
    burst_s: float = 6.0
    background_workers: int = 2
    background_below_s: float = 1.0
    background_nice: int = 10
    reserve: int = 1
    debt_waits: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be within 1..256, got {self.workers}")
        if not 1 <= self.per_lane <= 16:
            raise ValueError(f"per_lane must be within 1..16, got {self.per_lane}")
        if not 0 < self.share <= self.per_lane:
            raise ValueError(f"share must be within (0, per_lane], got {self.share}")
        if not self.burst_s > 0:
            raise ValueError(f"burst_s must be positive, got {self.burst_s}")
        if not 1 <= self.background_workers <= 64:
            raise ValueError(
                f"background_workers must be within 1..64, got {self.background_workers}"
            )
        if not 0 <= self.background_below_s <= self.burst_s:
            raise ValueError("background_below_s must be within 0..burst_s")
        if self.reserve < 0:
            raise ValueError(f"reserve must be >= 0, got {self.reserve}")
        if not 0 <= self.background_nice <= 19:
            raise ValueError(f"background_nice must be within 0..19, got {self.background_nice}")


@dataclass(slots=True)
class _Job:
    future: Future[Any]
    fn: Callable[[], Any]


@dataclass(slots=True)
class _LaneState:
    budget: float  # worker-seconds left at ``stamp`` (negative: overdrawn by a long job)
    stamp: float
    jobs: deque[_Job] = field(default_factory=deque)
    running: int = 0
    closed: bool = False
    background: bool = False  # runs only on background workers

    def budget_at(self, now: float, options: FairExecutorOptions) -> float:
        return min(options.burst_s, self.budget + (now - self.stamp) * options.share)


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
        self._threads: dict[bool, list[threading.Thread]] = {False: [], True: []}  # background?
        self._shutdown = False
        self._busy = {False: 0, True: 0}  # running jobs by kind of worker (background?)

    def lane(self, name: str, *, background: bool = False) -> WorkLane:
        """A new lane with a full budget (ValueError while one of that name is open); a
        ``background`` lane runs only on the niced background workers."""
        with self._cond:
            if self._shutdown:
                raise LaneClosed("the executor is shut down")
            if name in self._lanes:
                raise ValueError(f"lane {name!r} is open already")
            self._lanes[name] = _LaneState(
                budget=self.options.burst_s, stamp=self._clock(), background=background
            )
        return WorkLane(self, name)

    def submit(self, lane: str, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` on ``lane``; cancel the future to drop it before it starts."""
        future: Future[T] = Future()
        with self._cond:
            state = self._lanes.get(lane)
            if self._shutdown or state is None or state.closed:
                raise LaneClosed(f"lane {lane!r} is closed")
            state.jobs.append(_Job(future, fn))
            self._start_workers()
            self._cond.notify_all()  # a worker of the right kind
        future.add_done_callback(functools.partial(self._forget, lane))
        return future

    def pending(self, lane: str) -> tuple[int, int]:
        """(queued, running) jobs of ``lane``."""
        with self._cond:
            state = self._lanes.get(lane)
            return (0, 0) if state is None else (len(state.jobs), state.running)

    def budget(self, lane: str) -> float:
        """Worker-seconds ``lane`` may still spend now (0.0 for an unknown lane)."""
        with self._cond:
            state = self._lanes.get(lane)
            return 0.0 if state is None else state.budget_at(self._clock(), self.options)

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
            threads = [*self._threads[False], *self._threads[True]]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    # ---- workers ------------------------------------------------------------------------
    def _start_workers(self) -> None:
        """A worker more of each kind, up to their numbers, while jobs wait (under the lock)."""
        opts = self.options
        for background, most in ((False, opts.workers), (True, opts.background_workers)):
            threads = self._threads[background]
            if len(threads) < most:
                kind = "background" if background else "worker"
                thread = threading.Thread(
                    target=self._work,
                    args=(background,),
                    name=f"lane-{kind}-{len(threads)}",
                    daemon=True,
                )
                threads.append(thread)
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

    def _next(self, background: bool) -> tuple[tuple[str, _Job] | None, float | None]:
        """(the lane and job a worker of this kind runs next, None if none may run now;
        seconds until a lane in debt has budget again, None if none waits), under the lock."""
        now, opts = self._clock(), self.options
        best: tuple[float, str] | None = None
        debtor: tuple[float, str] | None = None  # the lane in debt that runs at the back
        wait_s: float | None = None
        for name, state in self._lanes.items():
            if not state.jobs or state.running >= opts.per_lane:
                continue
            budget = state.budget_at(now, opts)
            if state.background and not background:
                continue  # never on a call's workers
            if budget <= 0:
                if background and not opts.debt_waits:
                    if debtor is None or budget > debtor[0]:
                        debtor = (budget, name)
                    continue
                due = -budget / opts.share + 1e-3
                wait_s = due if wait_s is None else min(wait_s, due)
            elif (state.background or budget < opts.background_below_s) != background:
                continue  # the other kind of worker runs it
            elif not background and budget < opts.burst_s / 2 and self._reserved():
                continue  # the last free workers wait for a lane within its share
            elif best is None or budget > best[0]:
                best = (budget, name)
        best = best or debtor
        if best is None:
            return None, wait_s
        return (best[1], self._lanes[best[1]].jobs.popleft()), wait_s

    def _reserved(self) -> bool:
        """Whether only the reserve of free workers is left (under the lock)."""
        reserve = min(self.options.reserve, self.options.workers - 1)
        return self.options.workers - self._busy[False] <= reserve

    def _take(self, background: bool) -> tuple[str, _Job] | None:
        """Wait for a job this kind of worker may run (None: shut down), under the lock."""
        while not self._shutdown:
            picked, wait_s = self._next(background)
            if picked is not None:
                return picked
            self._cond.wait(wait_s)
        return None

    def _work(self, background: bool) -> None:
        _WORKER.background = background
        if background:
            _lower_priority(self.options.background_nice)
        while True:
            with self._cond:
                picked = self._take(background)
                if picked is None:
                    return
                name, job = picked
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled between its callback and now
                self._lanes[name].running += 1
                self._busy[background] += 1
            began = self._clock()
            try:
                job.future.set_result(job.fn())
            except BaseException as exc:  # handed to the awaiting task, never lost
                job.future.set_exception(exc)
            self._done(name, began, background)

    def _done(self, name: str, began: float, background: bool) -> None:
        with self._cond:
            self._busy[background] -= 1
            state = self._lanes[name]
            now = self._clock()
            state.budget = state.budget_at(now, self.options) - (now - began)
            state.stamp = now
            state.running -= 1
            if state.closed and state.running == 0:
                del self._lanes[name]
            self._cond.notify_all()


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux: per thread; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


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

    def create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task running ``coro`` on this lane (and the tasks it creates, theirs copying its
        context)."""
        context = contextvars.copy_context()
        context.run(_LANE.set, self)
        return asyncio.get_running_loop().create_task(coro, context=context)

    def pending(self) -> tuple[int, int]:
        """(queued, running) jobs of this lane."""
        return self.executor.pending(self.name)

    def budget(self) -> float:
        """Worker-seconds the lane may still spend now (near 0 or below: its call keeps the
        workers busier than its share; ``options.burst_s`` at most)."""
        return self.executor.budget(self.name)

    def close(self) -> None:
        """Drop the queued jobs; later work is refused with :class:`LaneClosed`."""
        self.executor.close_lane(self.name)


def on_background_worker() -> bool:
    """Whether the calling thread is a background worker: its job is a background lane's or
    one of a lane low on budget. Work that leaves the thread (a model's own worker pool)
    can hold back on it, as the thread's lower priority does not follow."""
    return _WORKER.background


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
