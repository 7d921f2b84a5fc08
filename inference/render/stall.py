"""Hang detection for the render scheduler's threads: ``StallTimer``, ``RenderStalled`` and
``WorkLane``.

A thread that drives a GPU (the scheduler's worker; its audio lane, a ``WorkLane``) marks
each piece of device work with ``begin``/``end``. ``StallTimer`` learns how long such
pieces take and says when the current one has run past ``max(floor_s, factor x recent
p99)``: a stuck CUDA kernel or a deadlocked driver call, not a slow batch. A Python thread
cannot be killed, so the caller can only fail what waits on it and stop using the device;
freeing the device takes a restart of the process.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Job",
    "RenderStalled",
    "Stall",
    "StallTimer",
    "WorkLane",
    "describe",
    "run_watched",
    "settle",
]

Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Future[Any]]


class RenderStalled(RuntimeError):
    """A render scheduler's device work hung past its limit; the scheduler is out of
    service until the process restarts."""

    def __init__(self, scheduler: str, what: str, stalled_s: float, limit_s: float) -> None:
        self.scheduler = scheduler
        self.what = what
        self.stalled_s = stalled_s
        self.limit_s = limit_s
        super().__init__(
            f"render scheduler {scheduler} stalled: {what} ran {stalled_s:.1f} s "
            f"(limit {limit_s:.1f} s); restart the process to recover the device"
        )


@dataclass(frozen=True, slots=True)
class Stall:
    """The piece of work that overran: what it is, how long it ran, the limit it had."""

    what: str
    busy_s: float
    limit_s: float


class StallTimer:
    """The piece of work one thread is in, and the limit learned from the pieces before.

    ``begin``/``end`` come from the watched thread; ``record`` adds a measured duration;
    ``overdue(now)`` may be asked from any thread. ``grace`` marks work that may compile
    (the first batch without warm-up, the first after the batch size changed): its limit is
    at least ``grace_s``.
    """

    def __init__(self, *, floor_s: float, factor: float, grace_s: float, window: int = 256) -> None:
        if floor_s <= 0 or factor <= 0 or grace_s < 0 or window < 1:
            raise ValueError("floor_s and factor must be > 0, grace_s >= 0, window >= 1")
        self.floor_s = floor_s
        self.factor = factor
        self.grace_s = grace_s
        self._times: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._since: float | None = None
        self._what = ""
        self._grace = False

    def begin(self, what: str, now: float, *, grace: bool = False) -> None:
        with self._lock:
            self._since, self._what, self._grace = now, what, grace

    def end(self) -> None:
        with self._lock:
            self._since = None

    def record(self, seconds: float) -> None:
        """A measured duration of one piece of work (a batch's time on the device)."""
        if seconds >= 0:
            with self._lock:
                self._times.append(seconds)

    def p99(self) -> float | None:
        with self._lock:
            times = sorted(self._times)
        if not times:
            return None
        return times[max(0, math.ceil(0.99 * len(times)) - 1)]

    def limit(self, *, grace: bool = False) -> float:
        p99 = self.p99()
        base = self.floor_s if p99 is None else max(self.floor_s, self.factor * p99)
        return max(base, self.grace_s) if grace else base

    def overdue(self, now: float) -> Stall | None:
        """The current piece of work if it has run past its limit, else None."""
        with self._lock:
            since, what, grace = self._since, self._what, self._grace
        if since is None:
            return None
        busy = now - since
        limit = self.limit(grace=grace)
        return Stall(what, busy, limit) if busy > limit else None


def settle(fut: Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    """Resolve ``fut`` unless it is done already (cancelled by its caller, failed by a
    stall)."""
    if fut.done():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    except InvalidStateError:
        pass


def describe(fn: Callable[..., Any]) -> str:
    """``a call to <its name>``, for a ``RenderStalled``."""
    return f"a call to {getattr(fn, '__qualname__', repr(fn))}"


def run_watched(
    timer: StallTimer,
    clock: Callable[[], float],
    job: Job,
    *,
    measure: bool,
    what: str | None = None,
) -> None:
    """Run one queued function under ``timer``'s watch; its future gets the outcome.
    ``measure`` adds its duration to what the timer's limit is learned from; ``what``
    names it in a ``RenderStalled`` (default: the function's name)."""
    fn, args, kwargs, fut = job
    if fut.done():
        return
    t0 = clock()
    timer.begin(what or describe(fn), t0)
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        settle(fut, exc=exc)
        return
    finally:
        timer.end()
    if measure:
        timer.record(clock() - t0)
    settle(fut, value)


class WorkLane:
    """A thread of its own that runs submitted functions in order, each watched by
    ``timer``. A daemon thread: one stuck in a driver call does not keep the process from
    exiting. Once ``shut``, ``submit`` raises what ``refuse`` returns."""

    def __init__(
        self,
        name: str,
        timer: StallTimer,
        *,
        clock: Callable[[], float],
        refuse: Callable[[], BaseException],
    ) -> None:
        self.name = name
        self.timer = timer
        self._clock = clock
        self._refuse = refuse
        self._cond = threading.Condition()
        self._jobs: deque[tuple[Job, bool, str | None]] = deque()  # job, measure it, what
        self._current: Future[Any] | None = None
        self._shut = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        measure: bool = True,
        what: str | None = None,
    ) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._cond:
            if self._shut:
                raise self._refuse()
            if self.thread is None:
                raise RuntimeError(f"{self.name} is not started")
            self._jobs.append(((fn, args, kwargs or {}, fut), measure, what))
            self._cond.notify()
        return fut

    def shut(self) -> tuple[list[Future[Any]], Future[Any] | None]:
        """Take no more work: the futures of the queued work (never to run) and of the
        work running now, for the caller to settle."""
        with self._cond:
            self._shut = True
            queued = [job[3] for job, _, _ in self._jobs]
            self._jobs.clear()
            self._cond.notify_all()
            return queued, self._current

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._shut:
                    self._cond.wait()
                if not self._jobs:
                    return
                job, measure, what = self._jobs.popleft()
                self._current = job[3]
            run_watched(self.timer, self._clock, job, measure=measure, what=what)
            with self._cond:
                self._current = None
