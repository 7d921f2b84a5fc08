"""The render scheduler's worker thread: warm-up, then batches until closed or stalled.

With a pipelined engine the worker queues batch k+1 as soon as the device has computed
batch k, then hands out batch k's frames. Each batch updates the capacity estimate (in the
frames the device ran, padding included); out of memory halves the batch cap and requeues
the batch, and enough good batches double the cap again. ``RenderScheduler``
(``inference.render.scheduler``) owns one ``BatchWorker`` and the ``WorkQueue`` it serves.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

from inference.render.batching import (
    BatchEngine,
    FairDegrader,
    InFlight,
    PaddedEngine,
    PipelinedEngine,
    Request,
    SchedulerOptions,
    SchedulerStats,
    ShrinkableEngine,
    TimedHandle,
    WorkQueue,
    demand,
    take_batch,
)
from inference.render.stall import StallTimer, describe, run_watched, settle

__all__ = ["BatchWorker"]

# the scheduler's logger: its records keep the name they had before the worker was split out
_log = logging.getLogger("inference.render.scheduler")


class BatchWorker:
    """One thread that owns the device: runs the functions queued for it and forms,
    launches and completes batches from ``queue``; keeps the capacity estimate (in
    ``stats``) and the out-of-memory batch cap. ``timer`` marks its device work for the
    scheduler's watchdog."""

    def __init__(
        self,
        engine: BatchEngine,
        options: SchedulerOptions,
        queue: WorkQueue,
        stats: SchedulerStats,
        timer: StallTimer,
        *,
        name: str,
        clock: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.options = options
        self.stats = stats
        self.timer = timer
        self.name = name
        self.thread: threading.Thread | None = None
        self.current_call: Future[Any] | None = None  # the queued function running now
        self._queue = queue
        self._clock = clock
        self._policy = FairDegrader(headroom=options.headroom, max_stride=options.max_stride)
        self._cap = options.max_batch
        self._ok_since_oom = 0
        self._last_computed = -math.inf
        self._may_compile = False  # the next batch may compile (no warm-up, a new size)

    def start(self, *, warmup: bool) -> float:
        """Start the thread and warm the engine up on it (if ``warmup``); the seconds the
        warm-up took. A failed warm-up raises here and ends the thread."""
        ready: Future[float] = Future()
        # a daemon thread: one stuck in a driver call must not keep the process from exiting
        self.thread = threading.Thread(
            target=self._run, args=(ready, warmup), name=f"{self.name}-worker", daemon=True
        )
        self.thread.start()
        try:
            return ready.result()
        except BaseException:
            self.thread.join()
            self.thread = None
            raise

    def fail(self, req: Request, exc: BaseException) -> None:
        """Fail ``req`` and the frames that follow it with ``exc``."""
        self.stats.failed += 1 + len(req.followers)
        with self._queue.cond:
            state = self._queue.sessions.get(req.session)
            if state is not None:
                state.pending.pop(req.frame_no, None)
        for r in (req, *req.followers):
            settle(r.future, exc=exc)

    def _run(self, ready: Future[float], warmup: bool) -> None:
        """The thread: warm-up (if asked), then batches until closed or stalled."""
        self._may_compile = not warmup  # the watchdog gives a compiling batch stall_grace_s
        try:
            seconds = self.engine.warmup() if warmup else 0.0
            cap = max(1, min(self.options.max_batch, self.engine.max_batch_size()))
        except BaseException as exc:
            ready.set_exception(exc)
            return
        with self._queue.cond:
            self._cap = cap
            self.stats.batch_cap = cap
        ready.set_result(seconds)
        self._serve()

    def _take_batch(self) -> list[Request]:
        """Pop up to the batch cap of runnable requests (called with the lock held)."""
        q = self._queue
        now = self._clock()
        wanted = demand(q.sessions.values(), now, self.options.window_s)
        stride = self._policy.stride(wanted, self.stats.capacity_fps)
        self.stats.stride = stride
        return take_batch(
            q.heap,
            q.sessions,
            self.stats,
            now=now,
            cap=self._cap,
            stride=stride,
            drop_late_s=self.options.drop_late_s,
        )

    def _run_calls(self) -> None:
        q = self._queue
        while True:
            with q.cond:
                if not q.calls or q.stalled is not None:
                    return
                job = q.calls.popleft()
                self.current_call = job[3]
            what = f"{describe(job[0])} on the worker"
            run_watched(self.timer, self._clock, job, measure=False, what=what)
            self.current_call = None

    def _serve(self) -> None:
        q = self._queue
        inflight: InFlight | None = None
        while True:
            self._run_calls()
            if inflight is not None and inflight.elapsed is None:
                self._wait_computed(inflight)
            with q.cond:
                while not q.heap and not q.calls and not q.closed:
                    if inflight is not None or q.stalled is not None:
                        break
                    q.cond.wait()
                if q.stopped:
                    break
                if q.calls:
                    continue
                batch: list[Request] = []
                if q.heap:
                    self._linger(inflight)
                    batch = self._take_batch()
            launched = self._launch(batch) if batch else None
            if inflight is not None:
                self._complete(inflight)
            inflight = launched
        if inflight is not None and q.stalled is None:
            self._complete(inflight)

    def _linger(self, inflight: InFlight | None) -> None:
        """With nothing in flight and a batch short of the cap, wait ``linger_s`` for a
        fuller one if the earliest deadline allows (lock held)."""
        q, o = self._queue, self.options
        if inflight is None and len(q.heap) < self._cap and o.linger_s > 0:
            slack = q.heap[0].deadline - self._clock()
            if slack > 4 * o.linger_s:
                q.cond.wait(o.linger_s)

    def _launch(self, batch: list[Request]) -> InFlight | None:
        """Start ``batch`` on the engine; None if it failed (its requests are settled or
        requeued)."""
        t0 = self._clock()
        jobs = [r.job for r in batch]
        engine = self.engine
        pipelined = engine if isinstance(engine, PipelinedEngine) else None
        self.timer.begin(f"a batch of {len(batch)} frames", t0, grace=self._may_compile)
        try:
            if pipelined is not None and self.options.pipeline:
                return InFlight(batch, t0, handle=pipelined.submit_batch(jobs))
            results = engine.run_batch(jobs)
        except torch.OutOfMemoryError as exc:
            self._on_oom(batch, exc)
            return None
        except Exception as exc:
            _log.exception("render batch of %d failed", len(batch))
            for req in batch:
                self.fail(req, exc)
            return None
        finally:
            self.timer.end()
        done = self._clock()
        self._last_computed = done
        return InFlight(batch, t0, results=results, elapsed=done - t0)

    def _wait_computed(self, inflight: InFlight) -> None:
        """Block until the device computed ``inflight``; its device time is measured from
        when the device could start it (its launch, or the end of the batch before)."""
        what = f"the device computing a batch of {len(inflight.batch)} frames"
        self.timer.begin(what, self._clock(), grace=self._may_compile)
        try:
            if inflight.handle is not None:
                inflight.handle.wait_computed()
        except Exception:  # the error surfaces in finish_batch
            _log.debug("wait for a computed batch failed", exc_info=True)
        finally:
            self.timer.end()
        done = self._clock()
        inflight.elapsed = done - max(inflight.launched, self._last_computed)
        self._last_computed = done

    def _finish(self, inflight: InFlight) -> list[Any] | None:
        """The results of a submitted batch; None if it failed (its requests are failed)."""
        batch = inflight.batch
        if inflight.elapsed is None:
            self._wait_computed(inflight)
        self.timer.begin(f"finishing a batch of {len(batch)} frames", self._clock())
        try:
            assert isinstance(self.engine, PipelinedEngine)  # it gave the handle
            return self.engine.finish_batch(inflight.handle)
        except Exception as exc:
            _log.exception("render batch of %d failed", len(batch))
            for req in batch:
                self.fail(req, exc)
            return None
        finally:
            self.timer.end()

    def _complete(self, inflight: InFlight) -> None:
        """Hand out the frames of a launched batch."""
        batch = inflight.batch
        results = inflight.results if inflight.results is not None else self._finish(inflight)
        if results is None:
            return
        if len(results) != len(batch):
            err = RuntimeError(f"engine returned {len(results)} results for {len(batch)} jobs")
            for req in batch:
                self.fail(req, err)
            return
        self._record(len(batch), inflight.elapsed or 0.0)
        if isinstance(inflight.handle, TimedHandle):
            self.stats.device_s += inflight.handle.device_seconds()
        with self._queue.cond:
            for req, res in zip(batch, results, strict=True):
                state = self._queue.sessions.get(req.session)
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
        self.timer.record(elapsed)
        self._may_compile = False
        # capacity in the frames the device ran: an engine that pads every batch to one
        # static size renders a half-empty batch as slowly as a full one, and counting
        # only the real frames would under-rate it and decimate calls for nothing
        engine = self.engine
        slots = max(n, int(engine.padded_size(n))) if isinstance(engine, PaddedEngine) else n
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
            self._cap = min(self.options.max_batch, self._cap * 2, engine.max_batch_size())
            self._ok_since_oom = 0
            st.batch_cap = self._cap

    def _on_oom(self, batch: list[Request], exc: BaseException) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(batch) == 1:
            _log.error("out of memory on a single frame: %s", exc)
            self.fail(batch[0], exc)
            return
        self.stats.oom_retries += 1
        self._cap = max(1, len(batch) // 2)
        self.stats.batch_cap = self._cap
        if isinstance(self.engine, ShrinkableEngine):  # padded to a fixed size: shrink too
            self.engine.shrink_batch(self._cap)
            self._may_compile = True  # a static graph is rebuilt for the new size
        self._ok_since_oom = 0
        _log.warning("out of memory at batch %d; retrying at %d", len(batch), self._cap)
        with self._queue.cond:
            for req in batch:
                heapq.heappush(self._queue.heap, req)
            self._queue.cond.notify()
