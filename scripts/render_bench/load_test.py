"""The load test: simulated 25 fps calls through ``RenderScheduler``, the search for the
largest number that meet their deadlines, then a diagnostic and an overload trial."""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

from inference.render.musetalk import FrameJob, MuseTalkEngine, windows_for_audio
from inference.render.scheduler import RenderScheduler, SchedulerOptions
from render_bench.common import FPS, log, speech_like


class GcPauses:
    """Time the interpreter spends in cyclic garbage collection (all threads stop)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.full = 0  # collections of the oldest generation
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self._t0
        self.total += pause
        self.longest = max(self.longest, pause)
        self.full += info.get("generation", 0) == 2

    def mark(self) -> tuple[float, int]:
        self.longest = 0.0
        return self.total, self.full

    def since(self, mark: tuple[float, int]) -> str:
        return (
            f"GC pauses {(self.total - mark[0]) * 1000:.0f} ms (longest "
            f"{self.longest * 1000:.0f} ms, {self.full - mark[1]} full)"
        )


def load_trial(
    sched: RenderScheduler,
    eng: MuseTalkEngine,
    sessions: int,
    seconds: float,
    warm: float,
    sentence_s: tuple[float, float] = (2.0, 4.0),
    precomputed: torch.Tensor | None = None,
) -> dict[str, float]:
    """``sessions`` calls talking continuously (sentences of ``sentence_s`` seconds, each
    arriving 0.5 s before the previous one ends); lateness of frames due after ``warm`` s."""
    clock = sched.clock
    late: list[float] = []
    rendered: dict[str, set[int]] = {}
    t0 = clock() + 0.2
    t_end = t0 + warm + seconds

    outstanding = [0]
    wake: list[Callable[[], object]] = []
    lock = threading.Lock()

    def on_done(fut: Future[np.ndarray], deadline: float, seen: set[int]) -> None:
        # record, then let go of the frame: a real call releases it once encoded
        if t0 + warm <= deadline <= t_end:
            late.append(clock() - deadline)
            seen.add(id(fut.result()))
        with lock:
            outstanding[0] -= 1
            if outstanding[0] == 0 and wake:
                wake[0]()

    async def call(k: int) -> None:
        name = f"call{k}"
        sched.open_session(name, fps=FPS)
        rng = np.random.default_rng(k)
        arrival = t0 + rng.uniform(0, 1.0)
        play_end, frame_no = 0.0, 0
        seen = rendered.setdefault(name, set())
        n_frames = eng.avatar("bench").num_frames
        while arrival < t_end:
            await asyncio.sleep(max(0.0, arrival - clock()))
            audio = speech_like(rng.uniform(*sentence_s), seed=k * 1000 + frame_no)
            if precomputed is None:  # features on the scheduler's audio lane, as the renderer
                feats = sched.call_audio(windows_for_audio, eng.audio, audio)
                windows = await asyncio.wrap_future(feats)
            else:
                windows = precomputed[: len(audio) * FPS // 16000]
            start = max(clock() + 0.3, play_end)
            n = int(windows.shape[0])
            jobs = [FrameJob("bench", (frame_no + i) % n_frames, windows[i]) for i in range(n)]
            deadlines = [start + i / FPS for i in range(n)]
            with lock:
                outstanding[0] += n
            for fut, d in zip(
                sched.submit_many(name, frame_no, jobs, deadlines), deadlines, strict=True
            ):
                fut.add_done_callback(functools.partial(on_done, deadline=d, seen=seen))
            frame_no += n
            play_end = start + n / FPS
            arrival = play_end - 0.5  # the next sentence's audio comes 0.5 s before this one ends

    async def main() -> None:
        loop = asyncio.get_running_loop()
        zero = asyncio.Event()
        wake.append(functools.partial(loop.call_soon_threadsafe, zero.set))
        await asyncio.gather(*(call(k) for k in range(sessions)))
        while outstanding[0] > 0:
            zero.clear()
            await zero.wait()
        for k in range(sessions):
            sched.close_session(f"call{k}")

    before = (
        sched.stats.repeated,
        sched.stats.dropped_late,
        sched.stats.frames,
        sched.stats.batches,
        sched.stats.busy_s,
        time.perf_counter(),
        sched.stats.device_s,
    )
    asyncio.run(main())
    lat = np.array(late)
    per_call = [len(v) / seconds for v in rendered.values()]
    return {
        "sessions": sessions,
        "frames": len(lat),
        "p99_ms": float(np.percentile(lat, 99) * 1000) if len(lat) else float("nan"),
        "max_ms": float(lat.max() * 1000) if len(lat) else float("nan"),
        "repeated": sched.stats.repeated - before[0],
        "dropped": sched.stats.dropped_late - before[1],
        "mean_batch": (sched.stats.frames - before[2]) / max(1, sched.stats.batches - before[3]),
        "busy": (sched.stats.busy_s - before[4]) / (time.perf_counter() - before[5]),
        "gpu": (sched.stats.device_s - before[6]) / (time.perf_counter() - before[5]),
        "capacity": sched.stats.capacity_fps or 0.0,
        "min_fps": min(per_call) if per_call else 0.0,
        "max_fps": max(per_call) if per_call else 0.0,
    }


def passes(r: dict[str, float]) -> bool:
    return r["frames"] > 0 and r["p99_ms"] <= 0 and r["repeated"] == 0 and r["dropped"] == 0


def load_test(
    say: Callable[[str], None],
    eng: MuseTalkEngine,
    mode: str,
    best: tuple[float, int],
    q_mask: float,
    seconds: float,
    quick: bool,
    windows: torch.Tensor,
    gcp: GcPauses,
    deadline: float = math.inf,
    repeat_calls: int = 0,
) -> None:
    """Search the largest number of calls that meet their deadlines; then ``repeat_calls``
    calls twice more (is it reliable?); then overload. No trial starts after ``deadline``
    (perf_counter seconds)."""
    fps_best, b_best = best
    say(f"load test: {mode} decode (mask-window PSNR {q_mask:.1f} dB vs 30), batch cap {b_best}")
    eng.configure(decode=mode, max_batch=b_best)  # type: ignore[arg-type]
    sched = RenderScheduler(eng, SchedulerOptions(max_batch=b_best))
    t0 = time.perf_counter()
    sched.start()  # warm-up on the worker thread: cuDNN's tuned plans are per thread
    gc.collect()  # then, as MuseTalkService.start, the compilation's objects out of the
    gc.freeze()  # GC's reach (a full collection of them stalled a trial for 0.5 s)
    say(f"scheduler start, engine warmed up on its worker thread: {time.perf_counter() - t0:.1f} s")
    warm = 0.5 if quick else 2.0
    sentence_s = (0.4, 0.8) if quick else (2.0, 4.0)
    n = max(1, int(0.75 * fps_best / FPS))
    trials: dict[int, dict[str, float]] = {}
    trial_s = warm + seconds + 5.0

    def time_left() -> bool:
        return time.perf_counter() + trial_s < deadline

    def describe(r: dict[str, float], gc_text: str) -> str:
        return (
            f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms, repeated "
            f"{int(r['repeated'])}, dropped {int(r['dropped'])}, mean batch "
            f"{r['mean_batch']:.1f}, engine busy {r['busy']:.0%}, GPU busy {r['gpu']:.0%}, "
            f"capacity estimate {r['capacity']:.0f} fps, {gc_text}"
        )

    if not quick:  # a first-time cost left out of the warm-up would show here
        mark = gcp.mark()
        r = load_trial(sched, eng, n, 3.0, 0.5, sentence_s)
        say(
            f"first trial right after start, {n} calls for 3 s (not counted): "
            + describe(r, gcp.since(mark))
        )
    for _ in range(2 if quick else 7):
        if not time_left():
            log("load test: time budget spent, search stopped")
            break
        mark = gcp.mark()
        trials[n] = r = load_trial(sched, eng, n, seconds, warm, sentence_s)
        log(f"{n} calls: " + describe(r, gcp.since(mark)))
        ok = [k for k, v in trials.items() if passes(v)]
        bad = [k for k, v in trials.items() if not passes(v)]
        lo, hi = (max(ok) if ok else 0), (min(bad) if bad else None)
        if hi is not None and hi - lo <= 1:
            break
        n = lo + max(1, (hi - lo) // 2) if hi is not None else lo + max(2, lo // 8)
        if n in trials:
            break
    say("")
    say(
        f"{'calls':>5} {'frames':>7} {'p99 late ms':>12} {'max late ms':>12} {'repeated':>9} "
        f"{'dropped':>8} {'mean batch':>10} {'GPU busy':>8}  meets p99"
    )
    for k in sorted(trials):
        r = trials[k]
        say(
            f"{k:>5} {int(r['frames']):>7} {r['p99_ms']:>12.1f} {r['max_ms']:>12.1f} "
            f"{int(r['repeated']):>9} {int(r['dropped']):>8} {r['mean_batch']:>10.1f} "
            f"{r['gpu']:>8.0%}  "
            f"{'yes' if passes(r) else 'no'}"
        )
    ok = [k for k, v in trials.items() if passes(v)]
    n_max = max(ok) if ok else 0
    say(
        "largest number of simultaneous 25 fps calls meeting deadlines "
        f"(p99 lateness <= 0, no repeated or dropped frames): {n_max}"
    )
    if repeat_calls and not quick:
        again = []
        for _ in range(2):
            if not time_left():
                break
            mark = gcp.mark()
            r = load_trial(sched, eng, repeat_calls, seconds, warm, sentence_s)
            again.append(r)
            log(f"{repeat_calls} calls again: " + describe(r, gcp.since(mark)))
        say(
            f"{repeat_calls} calls again, {len(again)} more trials: "
            + "; ".join(
                f"p99 {r['p99_ms']:.1f} ms, repeated {int(r['repeated'])}, dropped "
                f"{int(r['dropped'])}, {'meets' if passes(r) else 'misses'}"
                for r in again
            )
        )
    bad = [k for k, v in trials.items() if not passes(v)]
    probe = min(bad) if bad else n_max + 2
    if not time_left():
        say("diagnostic and overload trials skipped: time budget spent")
        sched.close()
        return
    r = load_trial(sched, eng, probe, seconds, warm, sentence_s, precomputed=windows)
    say(
        f"diagnostic, {probe} calls with audio features precomputed (GPU renders only): p99 "
        f"{r['p99_ms']:.1f} ms, repeated {int(r['repeated'])}, dropped {int(r['dropped'])}, "
        f"mean batch {r['mean_batch']:.1f}, engine busy {r['busy']:.0%}, GPU busy {r['gpu']:.0%}"
    )
    over = max(2, round(n_max * 1.4)) if n_max else 2
    if not time_left():
        say("overload trial skipped: time budget spent")
        sched.close()
        return
    r = load_trial(sched, eng, over, seconds, warm, sentence_s)
    say(
        f"overload, {over} calls: stride {sched.stats.stride}, rendered fps per call "
        f"min {r['min_fps']:.1f} / max {r['max_fps']:.1f}, p99 lateness {r['p99_ms']:.0f} ms"
    )
    sched.close()
