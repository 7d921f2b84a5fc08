"""The scheduler's watchdog: hung device work fails its calls, the pool moves on, close()
returns; slow work that still progresses is left alone."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from typing import Any

import pytest
from musetalk_helpers import make_avatar, speech_like, tiny_models

from inference.render.musetalk import MuseTalkService, ServiceOptions
from inference.render.scheduler import RenderScheduler, RenderStalled, SchedulerOptions
from inference.render.scheduler_pool import RenderUnavailable, SchedulerPool
from inference.render.stall import StallTimer

FLOOR = 0.3  # seconds: the stall limit floor of these tests
CHECK = 0.02


def _opts(**kw: Any) -> SchedulerOptions:
    base: dict[str, Any] = {
        "linger_s": 0.0,
        "stall_floor_s": FLOOR,
        "stall_factor": 3.0,
        "stall_check_s": CHECK,
        "close_timeout_s": 2.0,
    }
    base.update(kw)
    return SchedulerOptions(**base)


class HangingEngine:
    """``run_batch`` sleeps ``cost`` per batch; from batch ``hang_at`` on, it blocks on
    ``release`` instead (a stuck kernel)."""

    def __init__(self, *, hang_at: int | None = None, cost: float = 0.0) -> None:
        self.hang_at, self.cost = hang_at, cost
        self.started = threading.Event()  # set when the hanging batch has begun
        self.release = threading.Event()
        self.batches = 0

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
        k = self.batches
        self.batches += 1
        if self.hang_at is not None and k >= self.hang_at:
            self.started.set()
            self.release.wait(30)
        elif self.cost:
            time.sleep(self.cost)
        return [("frame", j) for j in jobs]

    def max_batch_size(self) -> int:
        return 64

    def warmup(self) -> float:
        return 0.0


class _Handle:
    def __init__(self, jobs: list[Any], hang: threading.Event | None) -> None:
        self.jobs, self.hang = jobs, hang

    def wait_computed(self) -> None:
        if self.hang is not None:
            self.hang.wait(30)


class HangingPipelinedEngine(HangingEngine):
    """Submit and finish separately; batch ``hang_at`` hangs in ``where``: the device never
    computes it (``computed``) or its frames never reach the host (``finish``)."""

    def __init__(self, *, hang_at: int, where: str) -> None:
        super().__init__()
        self.hang_at_k, self.where = hang_at, where

    def submit_batch(self, jobs: Sequence[Any]) -> _Handle:
        k = self.batches
        self.batches += 1
        hang = k == self.hang_at_k and self.where == "computed"
        return _Handle(list(jobs), self.release if hang else None)

    def finish_batch(self, handle: _Handle) -> list[Any]:
        if self.where == "finish" and handle.jobs and handle.jobs[0][1] == self.hang_at_k:
            self.started.set()
            self.release.wait(30)
        return [("frame", j) for j in handle.jobs]


@pytest.fixture
def released() -> Iterator[list[HangingEngine]]:
    """Engines to unblock after the test, so no thread stays stuck past it."""
    engines: list[HangingEngine] = []
    yield engines
    for e in engines:
        e.release.set()


def _fails_with_stall(fut: Future[Any], timeout: float) -> RenderStalled:
    with pytest.raises(RenderStalled) as info:
        fut.result(timeout=timeout)
    return info.value


def test_a_hung_batch_fails_its_frames_and_everything_queued(
    released: list[HangingEngine], caplog: pytest.LogCaptureFixture
) -> None:
    eng = HangingEngine(hang_at=2)
    released.append(eng)
    sched = RenderScheduler(eng, _opts(max_batch=2), name="gpu0")
    sched.open_session("a")
    sched.start()
    t0 = time.monotonic()
    done = sched.submit_many("a", 0, [("a", 0), ("a", 1)], [t0 + 5] * 2)
    assert [f.result(timeout=5) for f in done] == [("frame", ("a", 0)), ("frame", ("a", 1))]
    sched.submit("a", 2, ("a", 2), t0 + 5).result(timeout=5)  # two batches measured
    hung = sched.submit_many("a", 3, [("a", 3), ("a", 4)], [t0 + 5] * 2)
    assert eng.started.wait(5)
    queued = sched.submit_many("a", 5, [("a", 5), ("a", 6), ("a", 7)], [t0 + 5] * 3)
    calls = sched.call(lambda: "never runs")  # behind the stuck batch on the worker
    with caplog.at_level(logging.ERROR, logger="inference.render.scheduler"):
        err = _fails_with_stall(hung[0], timeout=FLOOR + 2)
    waited = time.monotonic() - t0
    assert waited < FLOOR + 1.5, waited
    assert err.scheduler == "gpu0" and err.stalled_s > FLOOR and err.limit_s == FLOOR
    assert "gpu0" in str(err) and "a batch of 2 frames" in str(err)
    assert "restart the process" in str(err)
    for f in [*hung, *queued, calls]:
        _fails_with_stall(f, timeout=0.5)
    assert not sched.healthy and sched.stalled is not None
    assert sched.status.startswith("render scheduler gpu0 stalled")
    assert any("stalled" in r.getMessage() for r in caplog.records)
    # new work fails fast, on every path
    t1 = time.monotonic()
    with pytest.raises(RenderStalled, match="gpu0"):
        sched.submit("a", 8, ("a", 8), t0 + 5)
    with pytest.raises(RenderStalled):
        sched.call(lambda: None)
    with pytest.raises(RenderStalled):
        sched.call_audio(lambda: None)
    assert time.monotonic() - t1 < 0.1
    t2 = time.monotonic()
    sched.close()  # the worker is still stuck: close() does not wait for it for long
    assert time.monotonic() - t2 < 1.5
    assert eng.batches == 3  # nothing ran after the hung batch


@pytest.mark.parametrize("where", ["computed", "finish"])
def test_a_pipelined_batch_that_hangs_is_caught(released: list[HangingEngine], where: str) -> None:
    eng = HangingPipelinedEngine(hang_at=1, where=where)
    released.append(eng)
    sched = RenderScheduler(eng, _opts(max_batch=1))
    sched.open_session("a")
    sched.start()
    d = time.monotonic() + 5
    first = sched.submit("a", 0, ("a", 0), d)
    assert first.result(timeout=5) == ("frame", ("a", 0))
    rest = sched.submit_many("a", 1, [("a", 1), ("a", 2), ("a", 3)], [d] * 3)
    for f in rest:  # the hung batch, the one queued behind it on the device, the queue
        _fails_with_stall(f, timeout=FLOOR + 2)
    assert not sched.healthy
    assert ("computing" if where == "computed" else "finishing") in str(sched.stalled)
    t0 = time.monotonic()
    sched.close()
    assert time.monotonic() - t0 < 1.5


def test_a_hung_audio_lane_fails_its_calls(released: list[HangingEngine]) -> None:
    eng = HangingEngine()
    released.append(eng)
    sched = RenderScheduler(eng, _opts())
    sched.open_session("a")
    sched.start()
    assert sched.call_audio(lambda: 7).result(timeout=5) == 7
    stuck = sched.call_audio(eng.release.wait, 30)
    behind = sched.call_audio(lambda: 8)
    frame = sched.submit("a", 0, ("a", 0), time.monotonic() + 60)
    frame.result(timeout=5)  # batches still render while the lane hangs ...
    err = _fails_with_stall(stuck, timeout=FLOOR + 2)  # ... until the watchdog steps in
    assert "a call to Event.wait on the audio lane" in str(err)
    _fails_with_stall(behind, timeout=0.5)
    assert not sched.healthy
    sched.close()


def test_slow_batches_that_progress_are_not_flagged() -> None:
    """Batches of 0.2 s teach a limit of 3 x 0.2 = 0.6 s (over the 0.3 s floor); a 0.4 s
    batch is past the floor but under the learned limit."""
    eng = HangingEngine(cost=0.2)
    sched = RenderScheduler(eng, _opts(max_batch=1, max_stride=1))
    sched.open_session("a")
    sched.start()
    d = time.monotonic() + 60
    futures = sched.submit_many("a", 0, list(range(5)), [d] * 5)
    wait(futures, timeout=10)
    assert [f.result() for f in futures] == [("frame", i) for i in range(5)]
    eng.cost = 0.4
    slow = sched.submit("a", 5, 5, d)
    assert slow.result(timeout=5) == ("frame", 5)
    time.sleep(3 * CHECK)
    assert sched.healthy and sched.stalled is None and sched.status == "ok"
    sched.close()


def test_the_limit_follows_the_measured_batch_times() -> None:
    """On a driven clock: a batch may take factor x the recent p99, and the first batch
    without warm-up gets the compile grace."""

    class Clock:
        def __init__(self) -> None:
            self.now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    class Engine(HangingEngine):
        def run_batch(self, jobs: Sequence[Any]) -> list[Any]:
            self.started.set()
            self.release.wait(30)
            self.release.clear()
            return [("frame", j) for j in jobs]

    eng = Engine()
    opts = _opts(
        max_batch=1, max_stride=1, stall_floor_s=5.0, stall_factor=4.0, stall_grace_s=100.0
    )
    sched = RenderScheduler(eng, opts, clock=clock)
    sched.open_session("a")
    sched.start(warmup=False)
    try:
        frame_no = iter(range(10**6))

        def batch(seconds: float, *, look: bool = True) -> None:
            eng.started.clear()
            fut = sched.submit("a", next(frame_no), "x", clock.now + 1e6)
            assert eng.started.wait(5)
            clock.now += seconds
            if look:
                time.sleep(5 * CHECK)  # the watchdog looks at the driven clock meanwhile
                assert sched.healthy, sched.status
            eng.release.set()
            fut.result(timeout=5)

        batch(60.0)  # the first batch may compile: under the 100 s grace
        batch(30.0)  # measured: 60 s; 4 x 60 s = 240 s
        for _ in range(300):  # the last 256 batches are 3 s (60 and 30 s are forgotten)
            batch(3.0, look=False)
        batch(11.0)  # the p99 of 255 x 3 s and 11 s is 3 s: the limit 12 s
        eng.started.clear()
        stuck = sched.submit("a", next(frame_no), "x", clock.now + 1e6)
        assert eng.started.wait(5)
        clock.now += 12.5
        err = _fails_with_stall(stuck, timeout=2)
        assert err.limit_s == pytest.approx(12.0) and err.stalled_s == pytest.approx(12.5)
    finally:
        eng.release.set()
        sched.close()


def test_stall_timer_limit() -> None:
    t = StallTimer(floor_s=5.0, factor=10.0, grace_s=300.0)
    assert t.limit() == 5.0 and t.limit(grace=True) == 300.0 and t.overdue(100.0) is None
    for _ in range(99):
        t.record(0.2)
    t.record(1.0)  # one slow batch in 100: the p99 is still 0.2 s
    assert t.p99() == 0.2 and t.limit() == 5.0
    t.record(1.0)
    assert t.p99() == 1.0 and t.limit() == 10.0
    t.begin("a batch", 100.0)
    assert t.overdue(109.0) is None
    stall = t.overdue(110.5)
    assert stall is not None and stall.what == "a batch" and stall.busy_s == 10.5
    t.end()
    assert t.overdue(1000.0) is None
    with pytest.raises(ValueError):
        StallTimer(floor_s=0.0, factor=10.0, grace_s=0.0)


def test_pool_skips_a_stalled_scheduler(released: list[HangingEngine]) -> None:
    bad, good = HangingEngine(hang_at=0), HangingEngine()
    released.extend([bad, good])
    scheds = [
        RenderScheduler(bad, _opts(), name="gpu0"),
        RenderScheduler(good, _opts(), name="gpu1"),
    ]
    pool = SchedulerPool(scheds)
    for s in scheds:
        s.start()
    assert pool.place("call0") is scheds[0]  # both idle: the first
    assert pool.healthy and pool.health() == {"gpu0": "ok", "gpu1": "ok"}
    fut = scheds[0].submit("call0", 0, "x", time.monotonic() + 60)
    _fails_with_stall(fut, timeout=FLOOR + 2)
    # new calls go to the healthy device, even when it is the busier one
    scheds[1].open_session("other", fps=100.0)
    assert pool.place("call1") is scheds[1]
    # a call placed on the stalled device moves when it is placed again (a restart)
    assert pool.place("call0") is scheds[1]
    assert scheds[0].session_count == 0
    assert pool.healthy and pool.health()["gpu1"] == "ok"
    assert "stalled" in pool.health()["gpu0"]
    scheds[1].close()
    assert not pool.healthy
    with pytest.raises(RenderUnavailable, match="gpu0: render scheduler gpu0 stalled"):
        pool.place("call2")
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < 1.5


def test_close_is_bounded_while_a_batch_hangs_undetected(released: list[HangingEngine]) -> None:
    """No watchdog: close() still returns after close_timeout_s and fails the stuck
    batch's frames."""
    eng = HangingEngine(hang_at=0)
    released.append(eng)
    sched = RenderScheduler(eng, _opts(watchdog=False, close_timeout_s=0.3))
    sched.open_session("a")
    sched.start()
    fut = sched.submit("a", 0, "x", time.monotonic() + 60)
    assert eng.started.wait(5)
    time.sleep(FLOOR + 0.2)
    assert sched.healthy and not fut.done()  # nobody watching
    t0 = time.monotonic()
    sched.close()
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(RuntimeError, match="closed"):
        fut.result(timeout=0.1)
    assert not sched.healthy and sched.status == "closed"


def test_stall_options_are_validated() -> None:
    for bad in ({"stall_floor_s": 0.0}, {"stall_factor": -1.0}, {"close_timeout_s": -1.0}):
        with pytest.raises(ValueError):
            SchedulerOptions(**bad)  # type: ignore[arg-type]


async def test_musetalk_service_reports_a_hung_device() -> None:
    """The real caller path on CPU: a renderer's frames fail with ``RenderStalled`` instead
    of waiting forever, the service says it is unhealthy, and new calls are refused."""
    opts = ServiceOptions(
        devices=("cpu",), compile=False, max_batch=8, scheduler=_opts(stall_floor_s=0.5)
    )
    service = MuseTalkService(tiny_models(), opts)
    avatar = make_avatar(name="hang")
    service.add_avatar(avatar)
    service.start(warmup=True)
    assert service.healthy and service.health() == {"render-cpu": "ok"}
    release = threading.Event()

    def stuck(jobs: Sequence[Any]) -> Any:
        release.wait(30)
        raise RuntimeError("released after the test")

    service.engines[0].submit_batch = stuck  # type: ignore[method-assign]
    try:
        r = service.renderer(avatar, session="x")
        t0 = time.monotonic()
        with pytest.raises(RenderStalled, match="render-cpu"):
            async for _ in r.render(speech_like(0.2)):
                pass
        assert time.monotonic() - t0 < 3.0
        assert not service.healthy and "stalled" in service.health()["render-cpu"]
        with pytest.raises(RenderUnavailable, match="render-cpu"):
            service.renderer(avatar, session="y")
    finally:
        release.set()
        service.close()
