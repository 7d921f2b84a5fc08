"""FairExecutor and lanes: dropped cancelled work, fair order, budgets, binding."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

from inference.work import (
    FairExecutor,
    FairExecutorOptions,
    LaneClosed,
    current_lane,
    run_blocking,
)


class Recorder:
    """Blocking jobs that note when they start and end (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, float]] = []

    def job(self, name: str, seconds: float = 0.0, gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
        def run() -> str:
            with self.lock:
                self.log.append(("start", name, time.monotonic()))
            if gate is not None:
                gate.wait(5)
            time.sleep(seconds)
            with self.lock:
                self.log.append(("end", name, time.monotonic()))
            return name

        return run

    def started(self) -> list[str]:
        return [name for kind, name, _ in self.log if kind == "start"]

    def at(self, kind: str, name: str) -> float:
        return next(t for k, n, t in self.log if k == kind and n == name)


@pytest.fixture
def executor():  # type: ignore[no-untyped-def]
    ex = FairExecutor(FairExecutorOptions(workers=1))
    yield ex
    ex.shutdown()


async def test_cancelled_queued_work_never_runs(executor: FairExecutor) -> None:
    rec, gate = Recorder(), threading.Event()
    lane = executor.lane("call")
    busy = asyncio.ensure_future(lane.run(rec.job("busy", gate=gate)))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(lane.run(rec.job(f"q{i}"))) for i in range(10)]
    await asyncio.sleep(0.05)
    assert lane.pending() == (10, 1)
    for task in queued:
        task.cancel()
    await asyncio.gather(*queued, return_exceptions=True)
    assert lane.pending() == (0, 1)  # dropped at once, not when a worker reaches them
    gate.set()
    assert await busy == "busy"
    await asyncio.sleep(0.05)
    assert rec.started() == ["busy"]
    assert lane.pending() == (0, 0)


async def test_the_lane_that_spent_least_goes_first(executor: FairExecutor) -> None:
    rec, gate = Recorder(), threading.Event()
    blocker, flood, quiet = executor.lane("blocker"), executor.lane("flood"), executor.lane("quiet")
    first = asyncio.ensure_future(blocker.run(rec.job("blocker", gate=gate)))
    await asyncio.sleep(0.05)
    floods = [asyncio.ensure_future(flood.run(rec.job(f"f{i}", 0.02))) for i in range(4)]
    await asyncio.sleep(0.01)
    asked = asyncio.ensure_future(quiet.run(rec.job("quiet", 0.02)))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, asked, *floods)
    # the flood's first job, then the quiet call's, before the rest of the flood
    assert rec.started() == ["blocker", "f0", "quiet", "f1", "f2", "f3"]


async def test_a_lane_runs_at_most_per_lane_jobs_at_once() -> None:
    executor = FairExecutor(FairExecutorOptions(workers=4, per_lane=1))
    rec = Recorder()
    lane = executor.lane("call")
    await asyncio.gather(*(lane.run(rec.job(f"j{i}", 0.02)) for i in range(4)))
    for a, b in zip(range(3), range(1, 4), strict=True):
        assert rec.at("start", f"j{b}") >= rec.at("end", f"j{a}")
    executor.shutdown()


async def test_by_default_a_lane_synthesises_and_renders_at_once() -> None:
    executor = FairExecutor(FairExecutorOptions(workers=4))
    rec = Recorder()
    lane = executor.lane("call")
    await asyncio.gather(*(lane.run(rec.job(f"j{i}", 0.05)) for i in range(3)))
    assert rec.at("start", "j1") < rec.at("end", "j0")  # two at once
    assert rec.at("start", "j2") >= min(rec.at("end", "j0"), rec.at("end", "j1"))
    executor.shutdown()


async def test_a_lane_over_its_budget_waits_and_leaves_workers_to_others() -> None:
    options = FairExecutorOptions(
        workers=2, per_lane=1, share=0.5, burst_s=0.05, background_below_s=0.0, debt_waits=True
    )
    executor = FairExecutor(options)
    rec = Recorder()
    greedy, polite = executor.lane("greedy"), executor.lane("polite")
    greedy_jobs = asyncio.gather(*(greedy.run(rec.job(f"g{i}", 0.1)) for i in range(2)))
    await asyncio.sleep(0.15)  # g0 ran 0.1 s on a 0.05 s budget: 0.05 s in debt
    assert executor.budget("greedy") < 0
    await polite.run(rec.job("p0", 0.0))  # a free worker, and polite has budget: at once
    await greedy_jobs
    # g1 waited for the debt to be earned back (0.05 s at 0.5/s = 0.1 s), p0 did not
    assert rec.at("start", "g1") - rec.at("end", "g0") >= 0.08
    assert rec.at("start", "p0") < rec.at("start", "g1")
    executor.shutdown()


async def test_a_lane_in_debt_runs_at_the_back_not_never() -> None:
    # one worker of each kind, so the order in which the background one serves lanes shows
    options = FairExecutorOptions(
        workers=1,
        background_workers=1,
        per_lane=1,
        share=0.02,
        burst_s=0.2,
        background_below_s=0.15,
    )
    executor = FairExecutor(options)
    rec, gate = Recorder(), threading.Event()
    alone, debtor, low = executor.lane("alone"), executor.lane("debtor"), executor.lane("low")
    for lane, spend in ((alone, 0.3), (debtor, 0.3), (low, 0.1)):
        await lane.run(rec.job(f"spend-{lane.name}", spend))
    assert executor.budget("alone") < 0 and executor.budget("debtor") < 0
    assert 0 < executor.budget("low") < 0.15  # within budget, but low: background

    def where() -> tuple[str, int]:
        return threading.current_thread().name, os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()
        )

    # in debt (5 s to earn it back) on an idle executor: it runs at once, at the back
    began = time.monotonic()
    name, nice = await alone.run(where)
    assert time.monotonic() - began < 2.0 and name.startswith("lane-background"), name
    if sys.platform.startswith("linux"):
        assert nice >= 10
    # while the background worker is busy, a lane in debt and one within budget queue up:
    # the one within budget goes first
    blocker = asyncio.ensure_future(alone.run(rec.job("blocker", gate=gate)))
    await asyncio.sleep(0.05)
    last = asyncio.ensure_future(debtor.run(rec.job("debtor")))
    first = asyncio.ensure_future(low.run(rec.job("low")))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, last, first)
    assert rec.at("start", "low") < rec.at("start", "debtor")
    executor.shutdown()


async def test_a_lane_low_on_budget_runs_in_the_background() -> None:
    # earning 0.05 s a second, the lane stays under 0.5 s for 2 s after the sleep below
    options = FairExecutorOptions(workers=2, share=0.05, burst_s=1.0, background_below_s=0.5)
    executor = FairExecutor(options)
    lane = executor.lane("call")

    def where() -> tuple[str, int]:
        me = threading.current_thread()
        return me.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    name, nice = await lane.run(where)
    assert name.startswith("lane-worker") and nice == os.getpriority(os.PRIO_PROCESS, 0)
    await lane.run(time.sleep, 0.6)  # 0.4 s of budget left: under 0.5
    name, nice = await lane.run(where)
    assert name.startswith("lane-background")
    if sys.platform.startswith("linux"):
        assert nice >= 10
    executor.shutdown()


async def test_closing_a_lane_drops_its_queue_and_refuses_more(executor: FairExecutor) -> None:
    rec, gate = Recorder(), threading.Event()
    lane = executor.lane("call")
    busy = asyncio.ensure_future(lane.run(rec.job("busy", gate=gate)))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(lane.run(rec.job("queued")))
    await asyncio.sleep(0.01)
    lane.close()
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(LaneClosed):
        await lane.run(rec.job("late"))
    gate.set()
    assert await busy == "busy"  # a running job finishes
    assert rec.started() == ["busy"]


async def test_errors_reach_the_caller(executor: FairExecutor) -> None:
    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await executor.lane("call").run(boom)


async def test_run_blocking_uses_the_lane_of_the_task(executor: FairExecutor) -> None:
    lane = executor.lane("call")

    def where() -> str:
        return threading.current_thread().name

    async def in_call() -> tuple[str, str]:
        assert current_lane() is lane
        child = asyncio.ensure_future(run_blocking(where))  # a task it creates: same lane
        return await run_blocking(where), await child

    assert (await run_blocking(where)).startswith("asyncio_")  # no lane: the default executor
    names = await lane.create_task(in_call())
    assert all(n.startswith("lane-worker") for n in names)
    assert current_lane() is None


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="workers"):
        FairExecutorOptions(workers=0)
    with pytest.raises(ValueError, match="per_lane"):
        FairExecutorOptions(per_lane=0)
    with pytest.raises(ValueError, match="share"):
        FairExecutorOptions(share=0)
    with pytest.raises(ValueError, match="burst_s"):
        FairExecutorOptions(burst_s=0)
    with pytest.raises(ValueError, match="background_below_s"):
        FairExecutorOptions(burst_s=1.0, background_below_s=2.0)
    with pytest.raises(ValueError, match="background_workers"):
        FairExecutorOptions(background_workers=0)
    executor = FairExecutor(FairExecutorOptions(workers=1))
    executor.lane("a")
    with pytest.raises(ValueError, match="open already"):
        executor.lane("a")


async def test_the_last_free_worker_waits_for_a_lane_within_its_share() -> None:
    # two workers, one kept for lanes with half their burst left
    options = FairExecutorOptions(workers=2, per_lane=2, burst_s=4.0, background_below_s=0.5)
    executor = FairExecutor(options)
    busy, quiet = executor.lane("busy"), executor.lane("quiet")
    await busy.run(time.sleep, 2.2)  # busy spent over half its budget (1.8 s left)
    release = threading.Event()
    started: list[str] = []

    def hold(name: str) -> None:
        started.append(name)
        release.wait(10)

    first = asyncio.ensure_future(busy.run(hold, "busy-1"))
    second = asyncio.ensure_future(busy.run(hold, "busy-2"))
    await asyncio.sleep(0.3)
    # busy got one worker; its second job may not take the last free (reserved) one
    assert started == ["busy-1"] and executor.pending("busy") == (1, 1)
    began = time.monotonic()
    assert await quiet.run(lambda: "at once") == "at once"
    assert time.monotonic() - began < 0.5
    release.set()
    await asyncio.gather(first, second)
    assert sorted(started) == ["busy-1", "busy-2"]
    executor.shutdown()


async def test_a_background_lane_never_takes_a_calls_worker() -> None:
    executor = FairExecutor(FairExecutorOptions(workers=2, background_workers=1))
    rec, gate = Recorder(), threading.Event()
    guess, call = executor.lane("c/speculation", background=True), executor.lane("c")
    threads: list[str] = []

    def where() -> None:
        threads.append(threading.current_thread().name)
        rec.job("guess", gate=gate)()

    guesses = [asyncio.ensure_future(guess.run(where)) for _ in range(3)]
    await asyncio.sleep(0.05)
    # full budget, two idle call workers: still one guess at a time, on the background one
    assert guess.pending() == (2, 1)
    assert threads == ["lane-background-0"]
    began = time.monotonic()
    await call.run(rec.job("reply"))  # at once, beside the stuck guess
    assert time.monotonic() - began < 1.0 and guess.pending() == (2, 1)
    gate.set()
    await asyncio.gather(*guesses)
    assert set(threads) == {"lane-background-0"}
    executor.shutdown()
