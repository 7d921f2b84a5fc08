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

``SchedulerPool`` holds one scheduler per device and places each call on the least loaded
healthy one.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from inference.render.stall import (
    Job,
    RenderStalled,
    Stall,
    StallTimer,
    WorkLane,
    describe,
    run_watched,
    settle,
)

__all__ = [
    "BatchEngine",
    "FairDegrader",
    "PipelinedEngine",
    "RenderScheduler",
    "RenderStalled",
    "RenderUnavailable",
    "SchedulerOptions",
    "SchedulerPool",
    "SchedulerStats",
]

_log = logging.getLogger(__name__)


class RenderUnavailable(RuntimeError):
    """No scheduler of a pool can take a call: every one has stalled or is closed."""


def _in_context(
    context: Callable[[], Any], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    with context():
        return fn(*args, **kwargs)


class BatchEngine(Protocol):
    """What the scheduler drives: the MuseTalk engine, or a fake in tests. Optional:
    ``padded_size(n)``, the batch size the device really runs for ``n`` jobs (capacity is
    measured in it), ``warmup_audio()`` (run on the audio lane's thread at start),
    ``audio_lane()`` and ``shrink_batch(n)``."""

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]: ...

    def max_batch_size(self) -> int: ...

    def warmup(self) -> float: ...


class PipelinedEngine(BatchEngine, Protocol):
    """An engine whose batches are submitted and finished separately. ``submit_batch``
    returns a handle with ``wait_computed()`` (blocks until the device has computed the
    batch; its results may still be on their way to the host)."""

    def submit_batch(self, jobs: Sequence[Any]) -> Any: ...

    def finish_batch(self, handle: Any) -> list[Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerOptions:
    """Batching, degradation and late-frame policy of one scheduler."""

    max_batch: int = 64
    linger_s: float = 0.003  # wait this long for a fuller batch when deadlines allow
    headroom: float = 0.9  # share of measured capacity the calls may use before degrading
    window_s: float = 2.0  # how long a call counts as active after its last request
    max_stride: int = 4  # deepest decimation (25 fps -> 6.25 fps)
    drop_late_s: float = 0.5  # frames later than this are repeated, not rendered
    oom_recover_batches: int = 200  # successful batches before a halved cap doubles again
    pipeline: bool = True  # queue the next batch before handing out the last (if supported)
    watchdog: bool = True  # fail everything and go unhealthy when device work hangs
    stall_floor_s: float = 5.0  # device work may always run this long ...
    stall_factor: float = 10.0  # ... or this many times the recent p99 batch time
    # at least this for a batch that may compile: the first without warm-up, the first
    # after an out-of-memory shrink (a static graph is rebuilt)
    stall_grace_s: float = 300.0
    stall_check_s: float = 0.25  # how often the watchdog looks
    close_timeout_s: float = 10.0  # longest close() waits for the threads

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_stride < 1 or self.oom_recover_batches < 1:
            raise ValueError("max_batch, max_stride and oom_recover_batches must be >= 1")
        if self.linger_s < 0 or self.window_s <= 0 or self.drop_late_s <= 0:
            raise ValueError("linger_s must be >= 0; window_s and drop_late_s > 0")
        if min(self.stall_floor_s, self.stall_factor, self.stall_check_s) <= 0:
            raise ValueError("stall_floor_s, stall_factor and stall_check_s must be > 0")
        if self.stall_grace_s < 0 or self.close_timeout_s < 0:
            raise ValueError("stall_grace_s and close_timeout_s must be >= 0")
        if not 0 < self.headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")


class FairDegrader:
    """Pure policy: one decimation stride for every call from demand and capacity."""

    def __init__(self, *, headroom: float = 0.9, max_stride: int = 4) -> None:
        self.headroom = headroom
        self.max_stride = max_stride

    def stride(self, demand_fps: float, capacity_fps: float | None) -> int:
        """Smallest k with demand / k <= headroom * capacity (1 while capacity is unknown)."""
        if capacity_fps is None or capacity_fps <= 0 or demand_fps <= 0:
            return 1
        k = math.ceil(demand_fps / (self.headroom * capacity_fps) - 1e-9)
        return max(1, min(self.max_stride, k))


@dataclass(slots=True)
class SchedulerStats:
    """Counters since start (read them; the scheduler owns them)."""

    batches: int = 0
    frames: int = 0
    repeated: int = 0  # decimated frames resolved with a neighbour
    dropped_late: int = 0
    oom_retries: int = 0
    failed: int = 0
    stride: int = 1
    batch_cap: int = 0
    capacity_fps: float | None = None
    busy_s: float = 0.0
    device_s: float = 0.0  # device time of the batches, where the engine measures it
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=256))


@dataclass(slots=True)
class _Request:
    deadline: float
    seq: int
    session: str
    frame_no: int
    job: Any
    future: Future[Any]
    followers: list[_Request] = field(default_factory=list)

    def __lt__(self, other: _Request) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


@dataclass(slots=True)
class _InFlight:
    """A launched batch: a pipelined engine's handle, or a synchronous engine's results."""

    batch: list[_Request]
    launched: float
    handle: Any = None
    results: list[Any] | None = None
    elapsed: float | None = None  # device time of the batch, once computed


@dataclass(slots=True)
class _Session:
    fps: float
    last_seen: float
    last_frame: tuple[int, Any] | None = None
    pending: dict[int, _Request] = field(default_factory=dict)


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
        self.options = options or SchedulerOptions()
        self.name = name
        self.clock = clock
        self.stats = SchedulerStats()
        self._policy = FairDegrader(
            headroom=self.options.headroom, max_stride=self.options.max_stride
        )
        self._cond = threading.Condition()
        self._heap: list[_Request] = []
        self._sessions: dict[str, _Session] = {}
        self._seq = itertools.count()
        self._cap = self.options.max_batch
        self._ok_since_oom = 0
        self._thread: threading.Thread | None = None
        self._last_computed = -math.inf
        self._closed = False
        self._calls: deque[Job] = deque()
        self._current_call: Future[Any] | None = None
        o = self.options
        timer = functools.partial(
            StallTimer, floor_s=o.stall_floor_s, factor=o.stall_factor, grace_s=o.stall_grace_s
        )
        self._render_timer = timer()  # the worker's device work
        self._audio = WorkLane(f"{name}-audio", timer(), clock=clock, refuse=self._refusal)
        self._may_compile = False  # the next batch may compile (no warm-up, a new size)
        self._stalled: RenderStalled | None = None
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
        if self._thread is not None:
            return
        if not warmup:  # the first batch may compile: the watchdog gives it stall_grace_s
            self._may_compile = True
        ready: Future[float] = Future()
        # daemon threads: one stuck in a driver call must not keep the process from exiting
        self._thread = threading.Thread(
            target=self._run, args=(ready, warmup), name=f"{self.name}-worker", daemon=True
        )
        self._thread.start()
        try:
            seconds = ready.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        if warmup:
            _log.info("scheduler %s warmed up in %.1f s", self.name, seconds)
        self._audio.start()
        warm_audio = getattr(self.engine, "warmup_audio", None)
        if warm_audio is not None:  # the lane thread's handles, at every chunk shape
            self._audio.submit(warm_audio, measure=False).result()
        if self.options.watchdog:
            self._watchdog = threading.Thread(
                target=self._watch, name=f"{self.name}-watchdog", daemon=True
            )
            self._watchdog.start()

    def close(self) -> None:
        """Stop the threads; pending requests fail with ``RuntimeError``. Waits at most
        ``close_timeout_s`` (about a second once stalled) for the threads: one stuck in the
        device is left behind."""
        with self._cond:
            self._closed = True
            pending, self._heap = self._heap, []
            calls, self._calls = list(self._calls), deque()
            self._cond.notify_all()
        audio, running = self._audio.shut()  # the running one finishes (or is stuck)
        err = RuntimeError(f"scheduler {self.name} closed")
        for req in pending:
            self._fail(req, err)
        for fut in [job[3] for job in calls] + audio:
            settle(fut, exc=err)
        self._stop.set()
        budget = self.options.close_timeout_s
        if self._stalled is not None:
            budget = min(budget, 1.0)
        deadline = time.monotonic() + budget
        threads = [self._thread, self._audio.thread, self._watchdog]
        for t in threads:
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t is not None and t.is_alive()]
        if stuck:  # what they were rendering will never come
            with self._cond:
                doomed = self._unresolved()
            for req in doomed:
                self._fail(req, self._stalled or err)
            for left in (self._current_call, running):
                if left is not None:
                    settle(left, exc=self._stalled or err)
            _log.error(
                "scheduler %s closed with %s stuck; left behind (restart the process to "
                "free the device)",
                self.name,
                ", ".join(stuck),
            )

    @property
    def healthy(self) -> bool:
        """False once device work hung past its limit (``stalled``; for good: the device
        needs a restart of the process) or the scheduler was closed."""
        return self._stalled is None and not self._closed

    @property
    def stalled(self) -> RenderStalled | None:
        """The hang that took this scheduler out of service, if any."""
        return self._stalled

    @property
    def status(self) -> str:
        """``ok``, ``closed``, or why the scheduler stalled."""
        if self._stalled is not None:
            return str(self._stalled)
        return "closed" if self._closed else "ok"

    def _check_open(self) -> None:
        """Raise unless the scheduler takes work."""
        if self._stalled is not None or self._closed:
            raise self._refusal()

    def _refusal(self) -> BaseException:
        """The error for work offered after a stall or close (a fresh one per caller)."""
        s = self._stalled
        if s is not None:
            return RenderStalled(s.scheduler, s.what, s.stalled_s, s.limit_s)
        return RuntimeError(f"scheduler {self.name} is closed")

    # ---- calls ---------------------------------------------------------------------------
    def open_session(self, session: str, *, fps: float = 25.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        with self._cond:
            state = self._sessions.get(session)
            if state is None:
                self._sessions[session] = _Session(fps=fps, last_seen=self.clock())
            else:
                state.fps = fps

    def close_session(self, session: str) -> None:
        with self._cond:
            state = self._sessions.pop(session, None)
            if state is None:
                return
            doomed = [r for r in self._heap if r.session == session]
            self._heap = [r for r in self._heap if r.session != session]
            heapq.heapify(self._heap)
        for req in doomed:
            self._fail(req, RuntimeError(f"session {session} closed"))

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def load(self) -> float:
        """Demanded share of capacity (sessions x fps / capacity); calls if unknown."""
        with self._cond:
            demand = sum(s.fps for s in self._sessions.values())
        cap = self.stats.capacity_fps
        return demand / cap if cap else float(len(self._sessions))

    def submit(self, session: str, frame_no: int, job: Any, deadline: float) -> Future[Any]:
        """Queue one frame of ``session``; the future gets the engine's result for it."""
        fut: Future[Any] = Future()
        with self._cond:
            self._check_open()
            state = self._sessions.get(session)
            if state is None:
                raise KeyError(f"session {session!r} is not open on scheduler {self.name}")
            req = _Request(deadline, next(self._seq), session, frame_no, job, fut)
            state.pending[frame_no] = req
            state.last_seen = self.clock()
            heapq.heappush(self._heap, req)
            self._cond.notify()
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

    # ---- worker --------------------------------------------------------------------------
    def _demand(self, now: float) -> float:
        horizon = self.options.window_s
        return sum(
            s.fps for s in self._sessions.values() if s.pending or now - s.last_seen < horizon
        )

    def _take_batch(self) -> list[_Request]:
        """Pop up to the batch cap of runnable requests (called with the lock held)."""
        now = self.clock()
        stride = self._policy.stride(self._demand(now), self.stats.capacity_fps)
        self.stats.stride = stride
        batch: list[_Request] = []
        while self._heap and len(batch) < self._cap:
            req = heapq.heappop(self._heap)
            state = self._sessions.get(req.session)
            if state is None or req.future.cancelled():
                if state is not None:
                    state.pending.pop(req.frame_no, None)
                continue
            anchor_no = req.frame_no - req.frame_no % stride
            anchor = state.pending.get(anchor_no) if anchor_no != req.frame_no else None
            if anchor is not None:
                anchor.followers.append(req)
                state.pending.pop(req.frame_no, None)
                self.stats.repeated += 1
                continue
            late = now - req.deadline > self.options.drop_late_s
            if (late or (stride > 1 and anchor_no != req.frame_no)) and state.last_frame:
                state.pending.pop(req.frame_no, None)
                settle(req.future, state.last_frame[1])
                if late:
                    self.stats.dropped_late += 1
                else:
                    self.stats.repeated += 1
                continue
            batch.append(req)
        return batch

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the worker thread before the next batch (e.g. audio features), so
        one thread owns the device and no other thread's kernels interleave with a batch."""
        fut: Future[Any] = Future()
        with self._cond:
            self._check_open()
            if self._thread is None:
                raise RuntimeError(f"scheduler {self.name} is not started")
            self._calls.append((fn, args, kwargs, fut))
            self._cond.notify()
        return fut

    def call_audio(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the audio lane: one thread of its own, in order of calls, inside
        the engine's ``audio_lane`` context if it has one (on CUDA: its own stream, its
        results complete before the future resolves). Feature extraction runs here, so it
        overlaps render batches instead of waiting between them."""
        self._check_open()
        what = f"{describe(fn)} on the audio lane"
        lane = getattr(self.engine, "audio_lane", None)
        if lane is None:
            return self._audio.submit(fn, args, kwargs, what=what)
        return self._audio.submit(_in_context, (lane, fn, *args), kwargs, what=what)

    def _run_calls(self) -> None:
        while True:
            with self._cond:
                if not self._calls or self._stalled is not None:
                    return
                job = self._calls.popleft()
                self._current_call = job[3]
            what = f"{describe(job[0])} on the worker"
            run_watched(self._render_timer, self.clock, job, measure=False, what=what)
            self._current_call = None

    def _run(self, ready: Future[float], warmup: bool) -> None:
        """The worker thread: warm-up (if asked), then batches until closed or stalled."""
        try:
            seconds = self.engine.warmup() if warmup else 0.0
            cap = max(1, min(self.options.max_batch, self.engine.max_batch_size()))
        except BaseException as exc:
            ready.set_exception(exc)
            return
        with self._cond:
            self._cap = cap
            self.stats.batch_cap = cap
        ready.set_result(seconds)
        self._serve()

    def _serve(self) -> None:
        inflight: _InFlight | None = None
        while True:
            self._run_calls()
            if inflight is not None and inflight.elapsed is None:
                self._wait_computed(inflight)
            with self._cond:
                while not self._heap and not self._calls and not self._closed:
                    if inflight is not None or self._stalled is not None:
                        break
                    self._cond.wait()
                if self._closed or self._stalled is not None:
                    break
                if self._calls:
                    continue
                batch: list[_Request] = []
                if self._heap:
                    if (
                        inflight is None
                        and len(self._heap) < self._cap
                        and self.options.linger_s > 0
                    ):
                        slack = self._heap[0].deadline - self.clock()
                        if slack > 4 * self.options.linger_s:
                            self._cond.wait(self.options.linger_s)
                    batch = self._take_batch()
            launched = self._launch(batch) if batch else None
            if inflight is not None:
                self._complete(inflight)
            inflight = launched
        if inflight is not None and self._stalled is None:
            self._complete(inflight)

    def _launch(self, batch: list[_Request]) -> _InFlight | None:
        """Start ``batch`` on the engine; None if it failed (its requests are settled or
        requeued)."""
        t0 = self.clock()
        jobs = [r.job for r in batch]
        submit = getattr(self.engine, "submit_batch", None) if self.options.pipeline else None
        what = f"a batch of {len(batch)} frames"
        self._render_timer.begin(what, t0, grace=self._may_compile)
        try:
            if submit is not None:
                return _InFlight(batch, t0, handle=submit(jobs))
            results = self.engine.run_batch(jobs)
        except torch.OutOfMemoryError as exc:
            self._on_oom(batch, exc)
            return None
        except Exception as exc:
            _log.exception("render batch of %d failed", len(batch))
            for req in batch:
                self._fail(req, exc)
            return None
        finally:
            self._render_timer.end()
        done = self.clock()
        self._last_computed = done
        return _InFlight(batch, t0, results=results, elapsed=done - t0)

    def _wait_computed(self, inflight: _InFlight) -> None:
        """Block until the device computed ``inflight``; its device time is measured from
        when the device could start it (its launch, or the end of the batch before)."""
        what = f"the device computing a batch of {len(inflight.batch)} frames"
        self._render_timer.begin(what, self.clock(), grace=self._may_compile)
        try:
            inflight.handle.wait_computed()
        except Exception:  # the error surfaces in finish_batch
            _log.debug("wait for a computed batch failed", exc_info=True)
        finally:
            self._render_timer.end()
        done = self.clock()
        inflight.elapsed = done - max(inflight.launched, self._last_computed)
        self._last_computed = done

    def _complete(self, inflight: _InFlight) -> None:
        """Hand out the frames of a launched batch."""
        batch = inflight.batch
        results = inflight.results
        if results is None:
            if inflight.elapsed is None:
                self._wait_computed(inflight)
            self._render_timer.begin(f"finishing a batch of {len(batch)} frames", self.clock())
            try:
                results = self.engine.finish_batch(inflight.handle)  # type: ignore[attr-defined]
            except Exception as exc:
                _log.exception("render batch of %d failed", len(batch))
                for req in batch:
                    self._fail(req, exc)
                return
            finally:
                self._render_timer.end()
        if len(results) != len(batch):
            err = RuntimeError(f"engine returned {len(results)} results for {len(batch)} jobs")
            for req in batch:
                self._fail(req, err)
            return
        self._record(len(batch), inflight.elapsed or 0.0)
        device_seconds = getattr(inflight.handle, "device_seconds", None)
        if device_seconds is not None:
            self.stats.device_s += device_seconds()
        with self._cond:
            for req, res in zip(batch, results, strict=True):
                state = self._sessions.get(req.session)
                if state is not None:
                    state.pending.pop(req.frame_no, None)
                    if state.last_frame is None or state.last_frame[0] <= req.frame_no:
                        state.last_frame = (req.frame_no, res)
        for req, res in zip(batch, results, strict=True):
            settle(req.future, res)
            for f in req.followers:
                settle(f.future, res)

    def _record(self, n: int, elapsed: float) -> None:
        st = self.stats
        st.batches += 1
        st.frames += n
        st.busy_s += elapsed
        st.batch_sizes.append(n)
        self._render_timer.record(elapsed)
        self._may_compile = False
        # capacity in the frames the device ran: an engine that pads every batch to one
        # static size renders a half-empty batch as slowly as a full one, and counting
        # only the real frames would under-rate it and decimate calls for nothing
        padded = getattr(self.engine, "padded_size", None)
        slots = max(n, int(padded(n))) if padded is not None else n
        if slots * 2 >= self._cap and elapsed > 0:
            rate = slots / elapsed
            st.capacity_fps = (
                rate if st.capacity_fps is None else 0.8 * st.capacity_fps + 0.2 * rate
            )
        self._ok_since_oom += 1
        if (
            self._ok_since_oom >= self.options.oom_recover_batches
            and self._cap < self.options.max_batch
        ):
            self._cap = min(self.options.max_batch, self._cap * 2, self.engine.max_batch_size())
            self._ok_since_oom = 0
            st.batch_cap = self._cap

    def _on_oom(self, batch: list[_Request], exc: BaseException) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(batch) == 1:
            _log.error("out of memory on a single frame: %s", exc)
            self._fail(batch[0], exc)
            return
        self.stats.oom_retries += 1
        self._cap = max(1, len(batch) // 2)
        self.stats.batch_cap = self._cap
        shrink = getattr(self.engine, "shrink_batch", None)
        if shrink is not None:  # engines that pad batches to a fixed size must shrink too
            shrink(self._cap)
            self._may_compile = True  # a static graph is rebuilt for the new size
        self._ok_since_oom = 0
        _log.warning("out of memory at batch %d; retrying at %d", len(batch), self._cap)
        with self._cond:
            for req in batch:
                heapq.heappush(self._heap, req)
            self._cond.notify()

    # ---- watchdog ------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.options.stall_check_s):
            if self._check_stall():
                return

    def _check_stall(self) -> bool:
        """Look once for hung device work; on a hang, take the scheduler out of service."""
        if self._stalled is not None or self._closed:
            return True
        now = self.clock()
        for timer in (self._render_timer, self._audio.timer):
            stall = timer.overdue(now)
            if stall is not None:
                self._on_stall(stall)
                return True
        return False

    def _on_stall(self, stall: Stall) -> None:
        """Fail the hung work and everything queued with ``RenderStalled``; refuse more."""
        err = RenderStalled(self.name, stall.what, stall.busy_s, stall.limit_s)
        with self._cond:
            if self._stalled is not None or self._closed:
                return
            self._stalled = err
            doomed = self._unresolved()
            calls, self._calls = list(self._calls), deque()
            current = [self._current_call]
            self._cond.notify_all()
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
            self._fail(req, err)
        for fut in [job[3] for job in calls] + audio + [f for f in current if f is not None]:
            settle(fut, exc=err)

    def _unresolved(self) -> list[_Request]:
        """Take every request not yet resolved: queued or in a batch (lock held)."""
        reqs = {id(r): r for r in self._heap}
        for state in self._sessions.values():
            reqs.update((id(r), r) for r in state.pending.values())
            state.pending.clear()
        self._heap = []
        return list(reqs.values())

    def _fail(self, req: _Request, exc: BaseException) -> None:
        self.stats.failed += 1 + len(req.followers)
        with self._cond:
            state = self._sessions.get(req.session)
            if state is not None:
                state.pending.pop(req.frame_no, None)
        for r in (req, *req.followers):
            settle(r.future, exc=exc)


class SchedulerPool:
    """One scheduler per device; each call is placed on the least loaded healthy one."""

    def __init__(self, schedulers: Sequence[RenderScheduler]) -> None:
        if not schedulers:
            raise ValueError("a pool needs at least one scheduler")
        self.schedulers = list(schedulers)
        self._placement: dict[str, RenderScheduler] = {}
        self._lock = threading.Lock()

    def place(self, session: str, *, fps: float = 25.0) -> RenderScheduler:
        """Open ``session`` on the least loaded healthy scheduler (sticky until ``release``,
        or until that scheduler stalls); ``RenderUnavailable`` if none is healthy."""
        with self._lock:
            chosen = self._placement.get(session)
            if chosen is not None and not chosen.healthy:
                del self._placement[session]
                chosen.close_session(session)
                chosen = None
            if chosen is None:
                healthy = [s for s in self.schedulers if s.healthy]
                if not healthy:
                    raise RenderUnavailable(
                        "no render scheduler can take a call: "
                        + "; ".join(f"{s.name}: {s.status}" for s in self.schedulers)
                    )
                chosen = min(healthy, key=lambda s: (s.load(), s.session_count))
                chosen.open_session(session, fps=fps)
                self._placement[session] = chosen
            return chosen

    @property
    def healthy(self) -> bool:
        """True while at least one scheduler can take calls."""
        return any(s.healthy for s in self.schedulers)

    def health(self) -> dict[str, str]:
        """Each scheduler's ``status`` by name."""
        return {s.name: s.status for s in self.schedulers}

    def release(self, session: str) -> None:
        with self._lock:
            chosen = self._placement.pop(session, None)
        if chosen is not None:
            chosen.close_session(session)

    def close(self) -> None:
        for s in self.schedulers:
            s.close()
