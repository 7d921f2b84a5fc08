"""MuseTalk through the Ray Serve render cluster against the in-process scheduler, one run.

    python scripts/bench_cluster.py --device cuda --budget-s 420        # one GPU
    python scripts/bench_cluster.py --device cpu --quick                  # smoke (tiny arch)

Both paths render through a ``Renderer`` as a call does: (a) in-process, ``MuseTalkService``
with one ``MuseTalkRenderer`` per call (the embedded mode); (b) cluster, a local Ray cluster
started here with one render replica on the device (its own process, engine and
``RenderScheduler``) and one ``ClusterRenderer`` per call in this process, which acts as the
media node (patches come back over Ray and are pasted into the avatar's frames here).

A frame meets its deadline when it reaches the caller of ``render`` by ``0.2 s + i / 25``
after its piece's audio (pieces back to back); the cluster's media node shows a frame frozen
from that moment, so for (b) every frame shown frozen counts as missed too. A trial of N
calls passes when no frame misses and the scheduler neither decimated nor dropped a frame.
Printed: the most simultaneous 25 fps calls that pass, talking all the time, for (a) and
(b) and their ratio; the patch bytes per second of one talking call; and, through the
cluster, the most calls that pass when each talks 40 % of the time (``--duty``: talk spells
of 2-6 s; silence costs no GPU, as the idle loop plays on the media node).
Random weights: the speed is that of the real architecture.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inference.avatar.model import PreparedAvatar  # noqa: E402
from inference.render.base import Renderer, frame_count  # noqa: E402

FPS = 25
START_S = 0.3  # a piece's first frame is shown this long after its audio ...
HOLD_S = 0.1  # ... and must have arrived this long before


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    return (rng.standard_normal(len(t)) * env * 4000).astype(np.int16)


def bench_avatar(width: int, height: int) -> PreparedAvatar:
    from inference.cluster.replica import synthetic_avatar

    return synthetic_avatar(width, height, name="bench")


@dataclass
class Trial:
    """What one trial saw in its measured window."""

    calls: int
    frames: int = 0
    late: int = 0
    worst_ms: float = -math.inf
    held: int = 0
    repeated: int = 0
    dropped: int = 0
    talk_s: float = 0.0
    patch_bytes: int = 0
    lateness: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.frames > 0
            and self.late == 0
            and self.held == 0
            and not (self.repeated or self.dropped)
        )

    def line(self) -> str:
        p99 = float(np.percentile(self.lateness, 99)) * 1000 if self.lateness else math.nan
        return (
            f"{self.calls} calls: {'pass' if self.ok else 'FAIL'}; frames {self.frames}, late "
            f"{self.late}, held {self.held}, p99 {p99:+.0f} ms, worst {self.worst_ms:+.0f} ms, "
            f"decimated {self.repeated}, dropped {self.dropped}"
        )


class Path_(Protocol):
    """One way of rendering: makes per-call renderers and reads the scheduler's counters."""

    name: str

    def make(self, session: str) -> Renderer: ...

    def release(self, session: str) -> None: ...

    def counters(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class InProcess:
    name = "in-process scheduler"

    def __init__(self, args: argparse.Namespace, avatar: PreparedAvatar) -> None:
        from inference.render.musetalk import (
            MuseTalkService,
            RendererOptions,
            ServiceOptions,
            build_models,
            official_arch,
            tiny_arch,
        )

        arch = tiny_arch() if args.arch == "tiny" else official_arch()
        options = ServiceOptions(
            devices=(args.device_name,),
            compile=not args.no_compile,
            decode=args.decode,
            max_batch=args.max_batch,
            renderer=RendererOptions(start_latency_s=args.replica_latency, yield_frames=2),
        )
        self.service = MuseTalkService(build_models(arch, seed=0), options)
        self.avatar = avatar
        self.service.add_avatar(avatar)
        t0 = time.perf_counter()
        self.service.start(warmup=True)
        log(f"in-process: engine warmed up in {time.perf_counter() - t0:.0f} s")

    def make(self, session: str) -> Renderer:
        return self.service.renderer(self.avatar, session=session)

    def release(self, session: str) -> None:
        self.service.release(session)

    def counters(self) -> dict[str, float]:
        st = self.service.schedulers[0].stats
        return {"repeated": st.repeated, "dropped_late": st.dropped_late, "patch_bytes": 0}

    def close(self) -> None:
        self.service.close()
        del self.service
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class Cluster:
    name = "Ray Serve cluster"

    def __init__(self, args: argparse.Namespace, avatar: PreparedAvatar) -> None:
        import ray
        from ray import serve

        from inference.cluster.app import RenderLedger, RenderReplica
        from inference.cluster.connection import ClusterOptions, RenderCluster
        from inference.cluster.wire import APP_NAME

        cuda = args.device_name.startswith("cuda")
        t0 = time.perf_counter()
        ray.init(
            num_cpus=max(4, os.cpu_count() or 4),
            num_gpus=1 if cuda else 0,
            include_dashboard=False,
            namespace="avatar-rtc",
            log_to_driver=False,
        )
        serve.start(proxy_location="Disabled")
        options = {
            "random_weights": True,
            "arch": args.arch,
            "device": args.device_name,
            "compile": not args.no_compile,
            "decode": args.decode,
            "max_batch": args.max_batch,
            "start_latency_s": args.replica_latency,
            "warm_size": [avatar.size[0], avatar.size[1]],
            "stall_floor_s": 30.0 if not cuda else 5.0,
        }
        actor = {"num_gpus": 1, "num_cpus": 2} if cuda else {"num_cpus": 1}
        replica: Any = RenderReplica  # Serve's deployments (the decorators hide their type)
        ledger: Any = RenderLedger
        app = replica.options(num_replicas=1, ray_actor_options=actor).bind(options, ledger.bind())
        serve.run(app, name=APP_NAME, route_prefix=None, blocking=False)
        self.cluster = RenderCluster(ClusterOptions(address="local", connect_timeout_s=900))
        self.cluster.connect()
        log(f"cluster: Ray started, replica warmed up in {time.perf_counter() - t0:.0f} s")
        self.avatar = avatar
        self._renderers: dict[str, Any] = {}

    def make(self, session: str) -> Renderer:
        from inference.cluster.client import ClusterRenderer

        r = ClusterRenderer(self.cluster, self.avatar, session=session)
        self._renderers[session] = r
        return r

    def release(self, session: str) -> None:
        r = self._renderers.pop(session, None)
        if r is not None:
            r.close()

    def counters(self) -> dict[str, float]:
        d = self.cluster.replicas.describe.remote().result(timeout_s=30)
        stats = dict(d["stats"])
        stats["held"] = self.cluster.held_frames
        stats["patch_bytes"] = self.cluster.patch_bytes
        return stats

    def close(self) -> None:
        import ray
        from ray import serve

        self.cluster.close()
        serve.shutdown()
        ray.shutdown()


async def _call(
    path: Path_, k: int, t0: float, t_end: float, measure_from: float, duty: float | None,
    trial: Trial, sentence_s: tuple[float, float],
) -> None:  # fmt: skip
    clock = time.monotonic
    rng = np.random.default_rng(k)
    session = f"bench{k}"
    renderer = path.make(session)
    try:
        await asyncio.sleep(max(0.0, t0 + rng.uniform(0, 1.0) - clock()))
        if duty is not None:  # start somewhere in a talk/silence cycle
            await asyncio.sleep(rng.uniform(0, 6.0 * (1 - duty) / duty))
        play_end = 0.0
        spell_end = clock() + (rng.uniform(2.0, 6.0) if duty is not None else math.inf)
        while clock() < t_end:
            audio = speech_like(rng.uniform(*sentence_s), seed=k * 100003 + int(clock() * 1000))
            t_req = clock()
            start = max(t_req + START_S, play_end)
            n = frame_count(len(audio), FPS)
            i = 0
            async for batch in renderer.render(audio):
                now = clock()
                for _ in batch:
                    due = start + i / FPS
                    if measure_from <= due <= t_end:
                        late = now - (due - HOLD_S)
                        trial.frames += 1
                        trial.lateness.append(late)
                        trial.worst_ms = max(trial.worst_ms, late * 1000)
                        trial.late += late > 0.0
                    i += 1
            play_end = start + n / FPS
            if measure_from <= start <= t_end:
                trial.talk_s += n / FPS
            next_at = play_end - 0.5  # the next sentence comes 0.5 s before this one ends
            if duty is not None and next_at >= spell_end:  # silence, then a new spell
                talk = rng.uniform(2.0, 6.0)
                next_at = play_end + talk * (1 - duty) / duty
                spell_end = next_at + talk
                play_end = 0.0
            await asyncio.sleep(max(0.0, next_at - clock()))
    finally:
        path.release(session)


def trial(
    path: Path_, calls: int, seconds: float, warm: float, duty: float | None, quick: bool
) -> Trial:
    t = Trial(calls)
    sentence_s = (0.6, 1.2) if quick else (2.0, 4.0)
    before = path.counters()

    async def main() -> None:
        t0 = time.monotonic() + 0.2
        measure_from, t_end = t0 + warm, t0 + warm + seconds
        await asyncio.gather(
            *(_call(path, k, t0, t_end, measure_from, duty, t, sentence_s) for k in range(calls))
        )

    asyncio.run(main())
    after = path.counters()
    t.repeated = int(after.get("repeated", 0) - before.get("repeated", 0))
    t.dropped = int(after.get("dropped_late", 0) - before.get("dropped_late", 0))
    t.held = int(after.get("held", 0) - before.get("held", 0))
    t.patch_bytes = int(after.get("patch_bytes", 0) - before.get("patch_bytes", 0))
    return t


@dataclass
class Search:
    """The largest N that passes, stepping from a guess; no trial starts past ``deadline``."""

    path: Path_
    seconds: float
    warm: float
    quick: bool
    deadline: float
    trials: dict[int, Trial] = field(default_factory=dict)

    def _time_left(self) -> bool:
        return time.monotonic() + self.warm + self.seconds + 8 < self.deadline

    def run(self, n: int, duty: float | None = None, max_n: int = 400) -> int:
        """The first trial always runs; later ones while time is left."""
        best, worst = 0, max_n + 1  # the most calls seen to pass, the fewest seen to fail
        while best + 1 < worst and (not self.trials or self._time_left()):
            t = trial(self.path, n, self.seconds, self.warm, duty, self.quick)
            self.trials[n] = t
            log(f"  {self.path.name}{'' if duty is None else f' duty {duty:.0%}'}: {t.line()}")
            if t.ok:
                best = n
            else:
                worst = n
            if worst > max_n:  # no failure yet: climb
                n = min(max_n, n + max(1, n // 4))
            else:
                n = (best + worst) // 2
        return best


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    log(f"== {name}")
    yield
    log(f"== {name}: {time.perf_counter() - t0:.0f} s")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", choices=["official", "tiny"], default=None)
    ap.add_argument(
        "--size", default=None, help="avatar frame WxH (default 1280x720, tiny 160x128)"
    )
    ap.add_argument("--decode", choices=["full", "mask"], default="mask")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per trial")
    ap.add_argument("--duty", type=float, default=0.4, help="talk share of the duty-cycle trial")
    ap.add_argument("--calls", type=int, default=0, help="first guess of calls (0: from capacity)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="no trial starts after this")
    ap.add_argument("--replica-latency", type=float, default=0.15)
    ap.add_argument("--quick", action="store_true", help="tiny arch on the CPU, short trials")
    args = ap.parse_args(argv)
    if args.quick:
        args.device = "cpu"
        args.arch = args.arch or "tiny"
        args.seconds = min(args.seconds, 2.0)
        args.max_batch = min(args.max_batch, 8)
    args.arch = args.arch or ("official" if args.device.startswith("cuda") else "tiny")
    args.size = args.size or ("1280x720" if args.arch == "official" else "160x128")
    args.device_name = "cuda:0" if args.device == "cuda" else args.device
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    deadline = time.monotonic() + args.budget_s
    w, h = (int(v) for v in args.size.split("x"))
    avatar = bench_avatar(w, h)
    warm = 1.0 if args.quick else 2.0
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    results: dict[str, Any] = {}
    with phase("cluster"):
        cluster = Cluster(args, avatar)
        try:
            cap = float(cluster.cluster.reports[0].capacity_fps)
            guess = args.calls or max(1, int(0.6 * cap / FPS))
            s = Search(cluster, args.seconds, warm, args.quick, deadline - 0.5 * args.budget_s)
            results["cluster"] = s.run(guess)
            bytes_s = [
                t.patch_bytes / max(1e-9, t.talk_s) for t in s.trials.values() if t.talk_s > 0
            ]
            results["bytes_s"] = float(np.median(bytes_s)) if bytes_s else math.nan
            d = Search(cluster, args.seconds * 2, warm, args.quick, deadline - 0.28 * args.budget_s)
            results["duty"] = d.run(max(1, int(results["cluster"] / args.duty)), duty=args.duty)
            results["capacity"] = cap
        finally:
            cluster.close()
    with phase("in-process"):
        inproc = InProcess(args, avatar)
        try:
            s = Search(inproc, args.seconds, warm, args.quick, deadline)
            results["inproc"] = s.run(max(1, results.get("cluster", 1)))
        finally:
            inproc.close()
    report(args, results)
    return 0


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    a, b = r.get("inproc", 0), r.get("cluster", 0)
    ratio = b / a if a else math.nan
    print(f"\nMuseTalk render cluster benchmark: {dev}, arch {args.arch}, {args.size}, "
          f"decode {args.decode}, compile {not args.no_compile}, random weights")  # fmt: skip
    print(f"a frame meets its deadline when it arrives {START_S - HOLD_S:.1f} s + i/25 after "
          f"its audio; {args.seconds:.0f} s measured per trial")  # fmt: skip
    print(f"| measure | value |\n|---|---|")  # noqa: F541
    print(f"| 25 fps calls meeting every deadline, in-process scheduler | {a} |")
    print(f"| 25 fps calls meeting every deadline, through Ray Serve | {b} |")
    print(f"| Ray Serve / in-process | {ratio:.0%} (target >= 90 %) |")
    print(f"| network per talking call (patches) | {r.get('bytes_s', math.nan) / 1000:.1f} kB/s |")
    print(
        f"| calls at {args.duty:.0%} talk, through Ray Serve | {r.get('duty', 0)} (target >= 45) |"
    )
    print(f"| replica capacity estimate | {r.get('capacity', math.nan):.0f} frames/s |")


if __name__ == "__main__":
    raise SystemExit(main())
