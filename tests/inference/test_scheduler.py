"""RenderScheduler: EDF order, batching, OOM halving, fair degradation, deadlines, pool."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import wait
from typing import Any

import pytest
import torch

from inference.render.scheduler import FairDegrader, RenderScheduler, SchedulerOptions
from inference.render.scheduler_pool import SchedulerPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, dt: float) -> None:
        with self._lock:
            self.now += dt


class FakeEngine:
    """Records batches; optional per-frame cost on a clock; fails above ``oom_above``."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        cost: float = 0.0,
        oom_above: int | None = None,
        cap: int = 64,
    ) -> None:
        self.batches: list[list[Any]] = []
        self.clock, self.cost, self.oom_above, self.cap = clock, cost, oom_above, cap
        self.oom_raised = 0

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
        if self.oom_above is not None and len(jobs) > self.oom_above:
            self.oom_raised += 1
            raise torch.OutOfMemoryError(f"fake allocator: {len(jobs)} frames do not fit")
        self.batches.append(list(jobs))
        if self.clock is not None:
            self.clock.advance(self.cost * len(jobs))
        elif self.cost:
            time.sleep(self.cost * len(jobs))
        return [("frame", j) for j in jobs]

    def max_batch_size(self) -> int:
        return self.cap

    def warmup(self) -> float:
        return 0.0


def _results(futures: Sequence[Any], timeout: float = 10.0) -> list[Any]:
    _done, pending = wait(futures, timeout=timeout)
    assert not pending, f"{len(pending)} frames never finished"
    return [f.result() for f in futures]


def test_batches_are_earliest_deadline_first() -> None:
    clock = FakeClock()
    eng = FakeEngine()
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=4, linger_s=0), clock=clock)
    sched.open_session("a")
    sched.open_session("b")
    deadlines = {"a": [5.0, 1.0, 9.0, 3.0, 7.0], "b": [2.0, 8.0, 4.0, 6.0, 0.5]}
    futures = []
    for s, ds in deadlines.items():
        for i, d in enumerate(ds):
            futures.append(sched.submit(s, i, (s, d), 100.0 + d))
    sched.start(warmup=False)
    _results(futures)
    sched.close()
    order = [job[1] for batch in eng.batches for job in batch]
    assert order == sorted(order)
    assert [len(b) for b in eng.batches] == [4, 4, 2]


def test_batch_cap_comes_from_engine_memory() -> None:
    sched = RenderScheduler(FakeEngine(cap=3), SchedulerOptions(max_batch=16))
    sched.start(warmup=False)
    assert sched.stats.batch_cap == 3
    sched.close()


def test_out_of_memory_halves_and_retries() -> None:
    eng = FakeEngine(oom_above=3)
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=16, linger_s=0), clock=FakeClock())
    sched.open_session("a")
    futures = sched.submit_many("a", 0, list(range(16)), [101.0 + i for i in range(16)])
    sched.start(warmup=False)
    results = _results(futures)
    sched.close()
    assert results == [("frame", i) for i in range(16)]
    assert eng.oom_raised >= 2 and sched.stats.oom_retries == eng.oom_raised
    assert sched.stats.batch_cap <= 3 and sched.stats.failed == 0
    assert max(len(b) for b in eng.batches) <= 3


def test_out_of_memory_on_one_frame_fails_that_frame() -> None:
    eng = FakeEngine(oom_above=0)
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0))
    sched.open_session("a")
    sched.start(warmup=False)
    fut = sched.submit("a", 0, "x", time.monotonic() + 1)
    with pytest.raises(torch.OutOfMemoryError):
        fut.result(timeout=5)
    sched.close()


def test_overload_degrades_every_call_equally() -> None:
    clock = FakeClock()
    eng = FakeEngine(clock=clock, cost=0.01)  # 100 frames/s of capacity
    opts = SchedulerOptions(max_batch=8, linger_s=0, drop_late_s=100.0)
    sched = RenderScheduler(eng, opts, clock=clock)
    sessions = [f"s{k}" for k in range(6)]  # 6 x 25 = 150 frames/s asked
    futures: dict[str, list[Any]] = {}
    for s in sessions:
        sched.open_session(s, fps=25)
    for s in sessions:
        jobs = [(s, i) for i in range(100)]
        futures[s] = sched.submit_many(s, 0, jobs, [100.2 + i / 25 for i in range(100)])
    sched.start(warmup=False)
    results = {s: _results(f) for s, f in futures.items()}
    sched.close()
    assert sched.stats.stride == 2
    rendered = {s: sum(1 for b in eng.batches for j in b if j[0] == s) for s in sessions}
    assert max(rendered.values()) - min(rendered.values()) <= 2
    assert all(45 <= n <= 60 for n in rendered.values()), rendered
    for s in sessions:  # decimated frames repeat an earlier rendered frame of the same call
        for i, res in enumerate(results[s]):
            assert res[1][0] == s and res[1][1] <= i


def test_fair_degrader_policy() -> None:
    p = FairDegrader(headroom=0.9, max_stride=4)
    assert p.stride(500.0, None) == 1
    assert p.stride(500.0, 1000.0) == 1
    assert p.stride(900.0, 1000.0) == 1
    assert p.stride(901.0, 1000.0) == 2
    assert p.stride(2000.0, 1000.0) == 3
    assert p.stride(10000.0, 1000.0) == 4


def _record_lateness(out: list[float], deadline: float, _fut: Any) -> None:
    out.append(time.monotonic() - deadline)


def test_light_load_meets_deadlines() -> None:
    eng = FakeEngine(cost=0.001)
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=8))
    sched.start(warmup=False)
    late: list[float] = []
    futures = []
    for s in ("a", "b", "c"):
        sched.open_session(s)
    t0 = time.monotonic()
    for s in ("a", "b", "c"):
        for i in range(20):
            d = t0 + 0.5 + i / 25
            f = sched.submit(s, i, (s, i), d)
            f.add_done_callback(functools.partial(_record_lateness, late, d))
            futures.append(f)
    _results(futures)
    sched.close()
    assert len(late) == 60 and max(late) < 0
    assert sched.stats.dropped_late == 0 and sched.stats.stride == 1


def test_late_frames_repeat_the_last_frame() -> None:
    clock = FakeClock()
    eng = FakeEngine(clock=clock, cost=0.0)
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0, drop_late_s=0.2), clock=clock)
    sched.open_session("a")
    first = sched.submit("a", 0, "x0", 101.0)
    sched.start(warmup=False)
    assert first.result(timeout=5) == ("frame", "x0")
    late = sched.submit("a", 1, "x1", 99.0)  # already 1 s late
    assert late.result(timeout=5) == ("frame", "x0")
    sched.close()
    assert sched.stats.dropped_late == 1 and len(eng.batches) == 1


def test_cancelled_and_closed_sessions() -> None:
    clock = FakeClock()
    eng = FakeEngine()
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0), clock=clock)
    sched.open_session("a")
    sched.open_session("b")
    gone = sched.submit("a", 0, "a0", 101.0)
    gone.cancel()
    doomed = sched.submit("b", 0, "b0", 101.0)
    sched.close_session("b")
    with pytest.raises(RuntimeError, match="closed"):
        doomed.result(timeout=1)
    with pytest.raises(KeyError):
        sched.submit("b", 1, "b1", 101.0)
    kept = sched.submit("a", 1, "a1", 101.0)
    sched.start(warmup=False)
    assert kept.result(timeout=5) == ("frame", "a1")
    sched.close()
    assert [j for b in eng.batches for j in b] == ["a1"]
    with pytest.raises(RuntimeError, match="closed"):
        sched.submit("a", 2, "a2", 101.0)


def test_options_validation() -> None:
    with pytest.raises(ValueError):
        SchedulerOptions(max_batch=0)
    with pytest.raises(ValueError):
        SchedulerOptions(headroom=1.5)


def test_pool_places_calls_on_the_least_loaded_device() -> None:
    scheds = [RenderScheduler(FakeEngine(), name=f"gpu{i}") for i in range(3)]
    pool = SchedulerPool(scheds)
    placed = [pool.place(f"call{i}") for i in range(6)]
    assert [s.session_count for s in scheds] == [2, 2, 2]
    assert pool.place("call0") is placed[0]  # sticky
    pool.release("call0")
    assert placed[0].session_count == 1
    assert pool.place("call9") is placed[0]
    pool.close()
    with pytest.raises(ValueError):
        SchedulerPool([])


def test_calls_run_on_the_worker_thread_between_batches() -> None:
    eng = FakeEngine()
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0))
    with pytest.raises(RuntimeError, match="not started"):
        sched.call(lambda: None)
    sched.start(warmup=False)
    name = sched.call(lambda: threading.current_thread().name).result(timeout=5)
    assert name == "render-worker"
    with pytest.raises(ZeroDivisionError):
        sched.call(lambda: 1 / 0).result(timeout=5)
    sched.close()
    with pytest.raises(RuntimeError, match="closed"):
        sched.call(lambda: None)


class _Handle:
    def __init__(self, jobs: list[Any], log: list[str], k: int) -> None:
        self.jobs, self.log, self.k = jobs, log, k

    def wait_computed(self) -> None:
        self.log.append(f"computed {self.k}")


class PipelinedFake(FakeEngine):
    """Submit and finish separately; logs the order of both."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[str] = []

    def submit_batch(self, jobs: Sequence[Any]) -> _Handle:
        if self.oom_above is not None and len(jobs) > self.oom_above:
            self.oom_raised += 1
            raise torch.OutOfMemoryError("fake allocator")
        self.batches.append(list(jobs))
        k = len(self.batches) - 1
        self.log.append(f"submit {k}")
        return _Handle(list(jobs), self.log, k)

    def finish_batch(self, handle: _Handle) -> list[Any]:
        self.log.append(f"finish {handle.k}")
        return [("frame", j) for j in handle.jobs]


def test_pipelined_engine_queues_the_next_batch_before_handing_out_the_last() -> None:
    eng = PipelinedFake()
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=4, linger_s=0), clock=FakeClock())
    sched.open_session("a")
    futures = sched.submit_many("a", 0, list(range(12)), [101.0 + i for i in range(12)])
    sched.start(warmup=False)
    assert _results(futures) == [("frame", i) for i in range(12)]
    sched.close()
    assert eng.log == [
        "submit 0",
        "computed 0",
        "submit 1",
        "finish 0",
        "computed 1",
        "submit 2",
        "finish 1",
        "computed 2",
        "finish 2",
    ]
    assert sched.stats.batches == 3 and sched.stats.frames == 12


def test_pipelined_out_of_memory_halves_and_retries() -> None:
    eng = PipelinedFake(oom_above=2)
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=8, linger_s=0), clock=FakeClock())
    sched.open_session("a")
    futures = sched.submit_many("a", 0, list(range(8)), [101.0 + i for i in range(8)])
    sched.start(warmup=False)
    assert _results(futures) == [("frame", i) for i in range(8)]
    sched.close()
    assert sched.stats.oom_retries >= 2 and max(len(b) for b in eng.batches) <= 2


def test_pipeline_off_runs_batches_synchronously() -> None:
    eng = PipelinedFake()
    opts = SchedulerOptions(max_batch=4, linger_s=0, pipeline=False)
    sched = RenderScheduler(eng, opts, clock=FakeClock())
    sched.open_session("a")
    futures = sched.submit_many("a", 0, list(range(8)), [101.0 + i for i in range(8)])
    sched.start(warmup=False)
    assert _results(futures) == [("frame", i) for i in range(8)]
    sched.close()
    assert eng.log == [] and len(eng.batches) == 2  # run_batch, not submit/finish


class BlockingEngine(FakeEngine):
    """A batch that waits for ``release``; an ``audio_lane`` context that counts uses."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()
        self.lane_uses = 0
        self.lane_thread = ""

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
        self.started.set()
        assert self.release.wait(10)
        return super().run_batch(jobs)

    @contextlib.contextmanager
    def audio_lane(self) -> Iterator[None]:
        self.lane_uses += 1
        self.lane_thread = threading.current_thread().name
        yield


def test_audio_lane_runs_while_a_batch_is_rendering() -> None:
    eng = BlockingEngine()
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0))
    with pytest.raises(RuntimeError, match="not started"):
        sched.call_audio(lambda: None)
    sched.open_session("a")
    sched.start(warmup=False)
    frame = sched.submit("a", 0, "x", time.monotonic() + 5)
    assert eng.started.wait(5)  # the worker is inside a batch
    feats = sched.call_audio(lambda x: (x * 2, threading.current_thread().name), 21)
    value, thread = feats.result(timeout=5)  # not stuck behind the batch
    assert value == 42 and thread.startswith("render-audio") and not frame.done()
    assert eng.lane_uses == 1 and eng.lane_thread == thread
    with pytest.raises(ZeroDivisionError):
        sched.call_audio(lambda: 1 / 0).result(timeout=5)
    eng.release.set()
    assert frame.result(timeout=5) == ("frame", "x")
    sched.close()
    with pytest.raises(RuntimeError, match="closed"):
        sched.call_audio(lambda: None)


class ThreadNotingEngine(FakeEngine):
    """Notes the threads that warm up, warm the audio up and render."""

    def __init__(self, *, fail_warmup: bool = False) -> None:
        super().__init__()
        self.fail_warmup = fail_warmup
        self.threads: dict[str, set[str]] = {"warmup": set(), "audio": set(), "batch": set()}

    def warmup(self) -> float:
        self.threads["warmup"].add(threading.current_thread().name)
        if self.fail_warmup:
            raise RuntimeError("warm-up failed")
        return 0.0

    def warmup_audio(self) -> None:
        self.threads["audio"].add(threading.current_thread().name)

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
        self.threads["batch"].add(threading.current_thread().name)
        return super().run_batch(jobs)


def test_warm_up_runs_on_the_threads_that_render_and_compute_audio() -> None:
    """cuDNN's tuned plans are per thread: the worker itself must be the one warmed."""
    eng = ThreadNotingEngine()
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0), name="r")
    sched.open_session("a")
    sched.start(warmup=True)
    assert eng.threads["warmup"] == {"r-worker"} and eng.threads["audio"] == {"r-audio"}
    _results([sched.submit("a", 0, "x", time.monotonic() + 5)])
    sched.close()
    assert eng.threads["batch"] == {"r-worker"}


def test_a_failed_warm_up_fails_start() -> None:
    eng = ThreadNotingEngine(fail_warmup=True)
    sched = RenderScheduler(eng, SchedulerOptions(linger_s=0), name="r")
    with pytest.raises(RuntimeError, match="warm-up failed"):
        sched.start(warmup=True)
    eng.fail_warmup = False
    sched.start(warmup=True)  # may be tried again
    assert sched.healthy
    sched.close()


class StaticGraphFake(FakeEngine):
    """Pads every batch to ``cap`` like a static compiled graph: a batch costs the same
    device time whatever its size."""

    def __init__(self, *, clock: FakeClock, batch_s: float, cap: int) -> None:
        super().__init__(clock=clock, cap=cap)
        self.batch_s = batch_s

    def padded_size(self, n: int) -> int:
        return self.cap

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
        assert self.clock is not None
        self.batches.append(list(jobs))
        self.clock.advance(self.batch_s)
        return [("frame", j) for j in jobs]


def test_capacity_counts_the_padded_batch() -> None:
    """Half-empty batches of a padded engine rate it at its full-batch capacity, so a load
    it can carry is not decimated (with real frames only it would be rated 100 frames/s
    here and every call halved)."""
    clock = FakeClock()
    eng = StaticGraphFake(clock=clock, batch_s=0.08, cap=16)  # 200 frames/s at 16 a batch
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=16, linger_s=0), clock=clock)
    for s in ("a", "b", "c", "d", "e", "f"):  # 150 frames/s asked for
        sched.open_session(s)
    sched.start(warmup=False)
    for k in range(6):
        futures = sched.submit_many("a", 8 * k, list(range(8)), [200.0 + i for i in range(8)])
        _results(futures)
    sched.close()
    assert [len(b) for b in eng.batches] == [8] * 6
    assert sched.stats.capacity_fps == pytest.approx(200.0)
    assert sched.stats.stride == 1 and sched.stats.repeated == 0
