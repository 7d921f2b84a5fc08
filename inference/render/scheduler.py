"""RenderScheduler: one per GPU, batching frame requests of every call on that device.

Requests carry a deadline (the time the frame must be on screen, on the scheduler's
monotonic clock). One owned worker thread warms the engine up (cuDNN's tuned plans are
per thread) and then forms batches earliest-deadline-first, up to the largest batch the
device's free memory allows; on out-of-memory it halves the batch and retries instead of
failing a call. With an engine that can submit a batch and finish it
later (``PipelinedEngine``), the worker queues batch k+1 as soon as the device has computed
batch k, then hands out batch k's frames while the device works on k+1: the device does
not wait for copies to the host or for the worker. Audio-feature work (``call_audio``) runs
on a second thread, the audio lane, so it never delays a batch. When the calls ask for more
frames per second than the device renders, every call is decimated by the same stride
(each renders every k-th frame and repeats it), so all calls degrade together instead of
one starving. Frames already later than ``drop_late_s`` are not rendered: they repeat the
call's last frame.

A watchdog thread notices device work that hangs (a stuck CUDA kernel, a deadlocked driver
call): a batch, or an audio-lane job, running longer than ``max(stall_floor_s, stall_factor
x the recent p99 time of such work)``. It then fails that work and everything queued with
``RenderStalled``, refuses new work, and marks the scheduler unhealthy for good. The stuck
thread cannot be killed from Python: it stays behind (``close`` does not wait for it past
``close_timeout_s``), and the device is only usable again after the process restarts.

``SchedulerPool`` (``inference.render.scheduler_pool``) holds one scheduler per device and
places each call on the least loaded healthy one.

The parts live beside this module: ``batching`` (the engine protocols, options, stats, the
fairness policy, EDF batch forming and the queue shared with the worker) and
``scheduler_worker`` (the worker thread, capacity estimate and out-of-memory handling); the
names callers need are re-exported here.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from inference.render.batching import (
    AudioLaneEngine,
    AudioWarmingEngine,
    BatchEngine,
    FairDegrader,
    PipelinedEngine,
    Request,
    SchedulerOptions,
    SchedulerStats,
    SessionState,
    WorkQueue,
)
from inference.render.scheduler_worker import BatchWorker
from inference.render.stall import (
    RenderStalled,
    Stall,
    StallTimer,
    WorkLane,
    describe,
    settle,
)

__all__ = [
    "BatchEngine",
    "FairDegrader",
    "PipelinedEngine",
    "RenderScheduler",
    "RenderStalled",
    "SchedulerOptions",
    "SchedulerStats",
]

_log = logging.getLogger(__name__)


def _in_context(
    context: Callable[[], Any], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    with context():
        return fn(*args, **kwargs)


class RenderScheduler:
    """EDF batching of frame requests from many calls on one engine (one device)."""

    def __init__(
        self,
        engine: BatchEngine,
        options: SchedulerOptions | None = None,
        *,
        name: str = "render",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.options = o = options or SchedulerOptions()
        self.name = name
        self.clock = clock
        self.stats = SchedulerStats()
        self._queue = WorkQueue()
        self._seq = itertools.count()
        timer = functools.partial(
            StallTimer, floor_s=o.stall_floor_s, factor=o.stall_factor, grace_s=o.stall_grace_s
        )
        self._worker = BatchWorker(
            engine, o, self._queue, self.stats, timer(), name=name, clock=clock
        )
        self._audio = WorkLane(f"{name}-audio", timer(), clock=clock, refuse=self._refusal)
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, *, warmup: bool = True) -> None:
        """Warm the engine up on the worker thread (compilation and cuDNN's autotuning
        happen here, not in a call), then start serving.

        The warm-up must run on the thread that renders: cuDNN keeps its autotuned
        convolution plans per thread, so a worker warmed on another thread would tune
        every convolution again in its first batches, seconds in which no frame comes.
        Likewise the audio lane runs the engine's ``warmup_audio`` on its own thread."""
        if self._worker.thread is not None:
            return
        seconds = self._worker.start(warmup=warmup)
        if warmup:
            _log.info("scheduler %s warmed up in %.1f s", self.name, seconds)
        self._audio.start()
        if isinstance(self.engine, AudioWarmingEngine):  # the lane thread's handles
            self._audio.submit(self.engine.warmup_audio, measure=False).result()
        if self.options.watchdog:
            self._watchdog = threading.Thread(
                target=self._watch, name=f"{self.name}-watchdog", daemon=True
            )
            self._watchdog.start()

    def close(self) -> None:
        """Stop the threads; pending requests fail with ``RuntimeError``. Waits at most
        ``close_timeout_s`` (about a second once stalled) for the threads: one stuck in the
        device is left behind."""
        q = self._queue
        with q.cond:
            q.closed = True
            pending, q.heap = q.heap, []
            calls, q.calls = list(q.calls), deque()
            q.cond.notify_all()
        audio, running = self._audio.shut()  # the running one finishes (or is stuck)
        err = RuntimeError(f"scheduler {self.name} closed")
        for req in pending:
            self._worker.fail(req, err)
        for fut in [job[3] for job in calls] + audio:
            settle(fut, exc=err)
        self._stop.set()
        stuck = self._join_threads()
        if stuck:  # what they were rendering will never come
            with q.cond:
                doomed = q.take_unresolved()
            for req in doomed:
                self._worker.fail(req, q.stalled or err)
            for left in (self._worker.current_call, running):
                if left is not None:
                    settle(left, exc=q.stalled or err)
            _log.error(
                "scheduler %s closed with %s stuck; left behind (restart the process to "
                "free the device)",
                self.name,
                ", ".join(stuck),
            )

    def _join_threads(self) -> list[str]:
        """Wait for the threads within the close budget; the names of those still alive."""
        budget = self.options.close_timeout_s
        if self._queue.stalled is not None:
            budget = min(budget, 1.0)
        deadline = time.monotonic() + budget
        threads = [self._worker.thread, self._audio.thread, self._watchdog]
        for t in threads:
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t is not None and t.is_alive()]

    @property
    def healthy(self) -> bool:
        """False once device work hung past its limit (``stalled``; for good: the device
        needs a restart of the process) or the scheduler was closed."""
        return not self._queue.stopped

    @property
    def stalled(self) -> RenderStalled | None:
        """The hang that took this scheduler out of service, if any."""
        return self._queue.stalled

    @property
    def status(self) -> str:
        """``ok``, ``closed``, or why the scheduler stalled."""
        if self._queue.stalled is not None:
            return str(self._queue.stalled)
        return "closed" if self._queue.closed else "ok"

    def _check_open(self) -> None:
        """Raise unless the scheduler takes work."""
        if self._queue.stopped:
            raise self._refusal()

    def _refusal(self) -> BaseException:
        """The error for work offered after a stall or close (a fresh one per caller)."""
        s = self._queue.stalled
        if s is not None:
            return RenderStalled(s.scheduler, s.what, s.stalled_s, s.limit_s)
        return RuntimeError(f"scheduler {self.name} is closed")

    # ---- calls ---------------------------------------------------------------------------
    def open_session(self, session: str, *, fps: float = 25.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        q = self._queue
        with q.cond:
            state = q.sessions.get(session)
            if state is None:
                q.sessions[session] = SessionState(fps=fps, last_seen=self.clock())
            else:
                state.fps = fps

    def close_session(self, session: str) -> None:
        q = self._queue
        with q.cond:
            state = q.sessions.pop(session, None)
            if state is None:
                return
            doomed = [r for r in q.heap if r.session == session]
            q.heap = [r for r in q.heap if r.session != session]
            heapq.heapify(q.heap)
        for req in doomed:
            self._worker.fail(req, RuntimeError(f"session {session} closed"))

    @property
    def session_count(self) -> int:
        return len(self._queue.sessions)

    def load(self) -> float:
        """Demanded share of capacity (sessions x fps / capacity); calls if unknown."""
        with self._queue.cond:
            demand = sum(s.fps for s in self._queue.sessions.values())
        cap = self.stats.capacity_fps
        return demand / cap if cap else float(len(self._queue.sessions))

    def submit(self, session: str, frame_no: int, job: Any, deadline: float) -> Future[Any]:
        """Queue one frame of ``session``; the future gets the engine's result for it."""
        fut: Future[Any] = Future()
        q = self._queue
        with q.cond:
            self._check_open()
            state = q.sessions.get(session)
            if state is None:
                raise KeyError(f"session {session!r} is not open on scheduler {self.name}")
            req = Request(deadline, next(self._seq), session, frame_no, job, fut)
            state.pending[frame_no] = req
            state.last_seen = self.clock()
            heapq.heappush(q.heap, req)
            q.cond.notify()
        return fut

    def submit_many(
        self, session: str, first_frame: int, jobs: Sequence[Any], deadlines: Sequence[float]
    ) -> list[Future[Any]]:
        if len(jobs) != len(deadlines):
            raise ValueError("one deadline per job")
        return [
            self.submit(session, first_frame + i, job, d)
            for i, (job, d) in enumerate(zip(jobs, deadlines, strict=True))
        ]

    # ---- work on the scheduler's threads (the loop itself: scheduler_worker) -------------
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the worker thread before the next batch (e.g. audio features), so
        one thread owns the device and no other thread's kernels interleave with a batch."""
        fut: Future[Any] = Future()
        q = self._queue
        with q.cond:
            self._check_open()
            if self._worker.thread is None:
                raise RuntimeError(f"scheduler {self.name} is not started")
            q.calls.append((fn, args, kwargs, fut))
            q.cond.notify()
        return fut

    def call_audio(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the audio lane: one thread of its own, in order of calls, inside
        the engine's ``audio_lane`` context if it has one (on CUDA: its own stream, its
        results complete before the future resolves). Feature extraction runs here, so it
        overlaps render batches instead of waiting between them."""
        self._check_open()
        what = f"{describe(fn)} on the audio lane"
        if not isinstance(self.engine, AudioLaneEngine):
            return self._audio.submit(fn, args, kwargs, what=what)
        lane = self.engine.audio_lane
        return self._audio.submit(_in_context, (lane, fn, *args), kwargs, what=what)

    # ---- watchdog ------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.options.stall_check_s):
            if self._check_stall():
                return

    def _check_stall(self) -> bool:
        """Look once for hung device work; on a hang, take the scheduler out of service."""
        if self._queue.stopped:
            return True
        now = self.clock()
        for timer in (self._worker.timer, self._audio.timer):
            stall = timer.overdue(now)
            if stall is not None:
                self._on_stall(stall)
                return True
        return False

    def _on_stall(self, stall: Stall) -> None:
        """Fail the hung work and everything queued with ``RenderStalled``; refuse more."""
        err = RenderStalled(self.name, stall.what, stall.busy_s, stall.limit_s)
        q = self._queue
        with q.cond:
            if q.stopped:
                return
            q.stalled = err
            doomed = q.take_unresolved()
            calls, q.calls = list(q.calls), deque()
            current = [self._worker.current_call]
            q.cond.notify_all()
        audio, running = self._audio.shut()
        current.append(running)
        _log.error(
            "%s; failing %d frame(s) and %d queued call(s); no more calls go to this "
            "scheduler (its stuck thread cannot be stopped)",
            err,
            sum(1 + len(r.followers) for r in doomed),
            len(calls) + len(audio),
        )
        for req in doomed:
            self._worker.fail(req, err)
        for fut in [job[3] for job in calls] + audio + [f for f in current if f is not None]:
            settle(fut, exc=err)
