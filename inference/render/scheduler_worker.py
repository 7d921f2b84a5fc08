"""The render scheduler's worker thread: warm-up, then batches until closed or stalled.

With a pipelined engine the worker queues batch k+1 as soon as the device has computed
batch k, then hands out batch k's frames. Each batch updates the capacity estimate (in the
frames the device ran, padding included); out of memory halves the batch cap and requeues
the batch, and enough good batches double the cap again. ``BatchWorker`` is a part of
``RenderScheduler`` (``inference.render.scheduler``), which owns the state declared here.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

from inference.render.batching import (
    BatchEngine,
    FairDegrader,
    InFlight,
    Request,
    SchedulerOptions,
    SchedulerStats,
    SessionState,
    demand,
    take_batch,
)
from inference.render.stall import (
    Job,
    RenderStalled,
    StallTimer,
    describe,
    run_watched,
    settle,
)

__all__ = ["BatchWorker"]

# the scheduler's logger: its records keep the name they had before the worker was split out
_log = logging.getLogger("inference.render.scheduler")


class BatchWorker:
    """The worker thread's side of ``RenderScheduler``: forming, launching and completing
    batches, the capacity estimate and the out-of-memory batch cap."""

    engine: BatchEngine
    options: SchedulerOptions
    clock: Callable[[], float]
    stats: SchedulerStats
    _policy: FairDegrader
    _cond: threading.Condition
    _heap: list[Request]
    _sessions: dict[str, SessionState]
    _calls: deque[Job]
    _current_call: Future[Any] | None
    _cap: int
    _ok_since_oom: int
    _last_computed: float
    _closed: bool
    _stalled: RenderStalled | None
    _render_timer: StallTimer
    _may_compile: bool

    def _take_batch(self) -> list[Request]:
        """Pop up to the batch cap of runnable requests (called with the lock held)."""
        now = self.clock()
        wanted = demand(self._sessions.values(), now, self.options.window_s)
        stride = self._policy.stride(wanted, self.stats.capacity_fps)
        self.stats.stride = stride
        return take_batch(
            self._heap,
            self._sessions,
            self.stats,
            now=now,
            cap=self._cap,
            stride=stride,
            drop_late_s=self.options.drop_late_s,
        )

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
        inflight: InFlight | None = None
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
                batch: list[Request] = []
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

    def _launch(self, batch: list[Request]) -> InFlight | None:
        """Start ``batch`` on the engine; None if it failed (its requests are settled or
        requeued)."""
        t0 = self.clock()
        jobs = [r.job for r in batch]
        submit = getattr(self.engine, "submit_batch", None) if self.options.pipeline else None
        what = f"a batch of {len(batch)} frames"
        self._render_timer.begin(what, t0, grace=self._may_compile)
        try:
            if submit is not None:
                return InFlight(batch, t0, handle=submit(jobs))
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
        return InFlight(batch, t0, results=results, elapsed=done - t0)

    def _wait_computed(self, inflight: InFlight) -> None:
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

    def _complete(self, inflight: InFlight) -> None:
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

    def _on_oom(self, batch: list[Request], exc: BaseException) -> None:
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

    def _fail(self, req: Request, exc: BaseException) -> None:
        self.stats.failed += 1 + len(req.followers)
        with self._cond:
            state = self._sessions.get(req.session)
            if state is not None:
                state.pending.pop(req.frame_no, None)
        for r in (req, *req.followers):
            settle(r.future, exc=exc)
