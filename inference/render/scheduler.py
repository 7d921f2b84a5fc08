"""RenderScheduler: one per GPU, batching frame requests of every call on that device.

Requests carry a deadline (the time the frame must be on screen, on the scheduler's
monotonic clock). One owned worker thread forms batches earliest-deadline-first, up to the
largest batch the device's free memory allows; on out-of-memory it halves the batch and
retries instead of failing a call. With an engine that can submit a batch and finish it
later (``PipelinedEngine``), the worker queues batch k+1 as soon as the device has computed
batch k, then hands out batch k's frames while the device works on k+1: the device does
not wait for copies to the host or for the worker. Audio-feature work (``call_audio``) runs
on a second thread, the audio lane, so it never delays a batch. When the calls ask for more
frames per second than the device renders, every call is decimated by the same stride
(each renders every k-th frame and repeats it), so all calls degrade together instead of
one starving. Frames already later than ``drop_late_s`` are not rendered: they repeat the
call's last frame.

``SchedulerPool`` holds one scheduler per device and places each call on the least loaded.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

__all__ = [
    "BatchEngine",
    "FairDegrader",
    "PipelinedEngine",
    "RenderScheduler",
    "SchedulerOptions",
    "SchedulerPool",
    "SchedulerStats",
]

_log = logging.getLogger(__name__)


def _settle(fut: Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    """Resolve ``fut`` unless its caller cancelled it (barge-in) meanwhile."""
    if fut.done():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    except InvalidStateError:
        pass


def _in_context(
    context: Callable[[], Any], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    with context():
        return fn(*args, **kwargs)


class BatchEngine(Protocol):
    """What the scheduler drives: the MuseTalk engine, or a fake in tests."""

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

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_stride < 1 or self.oom_recover_batches < 1:
            raise ValueError("max_batch, max_stride and oom_recover_batches must be >= 1")
        if self.linger_s < 0 or self.window_s <= 0 or self.drop_late_s <= 0:
            raise ValueError("linger_s must be >= 0; window_s and drop_late_s > 0")
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
        self._audio: ThreadPoolExecutor | None = None
        self._last_computed = -math.inf
        self._closed = False
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Future[Any]]]
        self._calls = deque()

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, *, warmup: bool = True) -> None:
        """Warm the engine up (compilation happens here, not in a call), then start."""
        if self._thread is not None:
            return
        if warmup:
            seconds = self.engine.warmup()
            _log.info("scheduler %s warmed up in %.1f s", self.name, seconds)
        self._cap = max(1, min(self.options.max_batch, self.engine.max_batch_size()))
        self.stats.batch_cap = self._cap
        self._audio = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-audio")
        warm_audio = getattr(self.engine, "warmup_audio", None)
        if warm_audio is not None:  # the lane thread's handles, at every chunk shape
            self._audio.submit(warm_audio).result()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-worker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the worker; pending requests fail with ``RuntimeError``."""
        with self._cond:
            self._closed = True
            pending, self._heap = self._heap, []
            calls, self._calls = list(self._calls), deque()
            self._cond.notify_all()
        for req in pending:
            self._fail(req, RuntimeError(f"scheduler {self.name} closed"))
        for *_, fut in calls:
            _settle(fut, exc=RuntimeError(f"scheduler {self.name} closed"))
        if self._audio is not None:
            self._audio.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=10)

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
            if self._closed:
                raise RuntimeError(f"scheduler {self.name} is closed")
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
                _settle(req.future, state.last_frame[1])
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
            if self._closed:
                raise RuntimeError(f"scheduler {self.name} is closed")
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
        with self._cond:
            if self._closed:
                raise RuntimeError(f"scheduler {self.name} is closed")
            if self._audio is None:
                raise RuntimeError(f"scheduler {self.name} is not started")
            lane = getattr(self.engine, "audio_lane", None)
            if lane is None:
                return self._audio.submit(fn, *args, **kwargs)
            return self._audio.submit(_in_context, lane, fn, *args, **kwargs)

    def _run_calls(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    return
                fn, args, kwargs, fut = self._calls.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except Exception as exc:
                fut.set_exception(exc)

    def _run(self) -> None:
        inflight: _InFlight | None = None
        while True:
            self._run_calls()
            if inflight is not None and inflight.elapsed is None:
                self._wait_computed(inflight)
            with self._cond:
                while not self._heap and not self._calls and not self._closed:
                    if inflight is not None:
                        break
                    self._cond.wait()
                if self._closed:
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
        if inflight is not None:
            self._complete(inflight)

    def _launch(self, batch: list[_Request]) -> _InFlight | None:
        """Start ``batch`` on the engine; None if it failed (its requests are settled or
        requeued)."""
        t0 = self.clock()
        jobs = [r.job for r in batch]
        submit = getattr(self.engine, "submit_batch", None) if self.options.pipeline else None
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
        done = self.clock()
        self._last_computed = done
        return _InFlight(batch, t0, results=results, elapsed=done - t0)

    def _wait_computed(self, inflight: _InFlight) -> None:
        """Block until the device computed ``inflight``; its device time is measured from
        when the device could start it (its launch, or the end of the batch before)."""
        try:
            inflight.handle.wait_computed()
        except Exception:  # the error surfaces in finish_batch
            _log.debug("wait for a computed batch failed", exc_info=True)
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
            try:
                results = self.engine.finish_batch(inflight.handle)  # type: ignore[attr-defined]
            except Exception as exc:
                _log.exception("render batch of %d failed", len(batch))
                for req in batch:
                    self._fail(req, exc)
                return
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
            _settle(req.future, res)
            for f in req.followers:
                _settle(f.future, res)

    def _record(self, n: int, elapsed: float) -> None:
        st = self.stats
        st.batches += 1
        st.frames += n
        st.busy_s += elapsed
        st.batch_sizes.append(n)
        if n * 2 >= self._cap and elapsed > 0:
            rate = n / elapsed
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
        self._ok_since_oom = 0
        _log.warning("out of memory at batch %d; retrying at %d", len(batch), self._cap)
        with self._cond:
            for req in batch:
                heapq.heappush(self._heap, req)
            self._cond.notify()

    def _fail(self, req: _Request, exc: BaseException) -> None:
        self.stats.failed += 1 + len(req.followers)
        with self._cond:
            state = self._sessions.get(req.session)
            if state is not None:
                state.pending.pop(req.frame_no, None)
        for r in (req, *req.followers):
            _settle(r.future, exc=exc)


class SchedulerPool:
    """One scheduler per device; each call is placed on the least loaded one."""

    def __init__(self, schedulers: Sequence[RenderScheduler]) -> None:
        if not schedulers:
            raise ValueError("a pool needs at least one scheduler")
        self.schedulers = list(schedulers)
        self._placement: dict[str, RenderScheduler] = {}
        self._lock = threading.Lock()

    def place(self, session: str, *, fps: float = 25.0) -> RenderScheduler:
        """Open ``session`` on the least loaded scheduler (sticky until ``release``)."""
        with self._lock:
            chosen = self._placement.get(session)
            if chosen is None:
                chosen = min(self.schedulers, key=lambda s: (s.load(), s.session_count))
                chosen.open_session(session, fps=fps)
                self._placement[session] = chosen
            return chosen

    def release(self, session: str) -> None:
        with self._lock:
            chosen = self._placement.pop(session, None)
        if chosen is not None:
            chosen.close_session(session)

    def close(self) -> None:
        for s in self.schedulers:
            s.close()
