"""The render scheduler's vocabulary and its batch forming: the engine protocols (the
required one and one per optional ability), options, stats, the fair degradation policy, the
queued request, the queue a scheduler shares with its worker, and ``take_batch`` (earliest
deadline first, every call decimated by the same stride, frames past ``drop_late_s``
repeated).

``RenderScheduler`` (``inference.render.scheduler``) owns the ``WorkQueue`` these work on;
the functions here run with its lock held.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from inference.render.stall import Job, RenderStalled, settle

__all__ = [
    "AudioLaneEngine",
    "AudioWarmingEngine",
    "BatchEngine",
    "BatchHandle",
    "FairDegrader",
    "InFlight",
    "PaddedEngine",
    "PipelinedEngine",
    "Request",
    "SchedulerOptions",
    "SchedulerStats",
    "SessionState",
    "ShrinkableEngine",
    "TimedHandle",
    "WorkQueue",
    "demand",
    "take_batch",
]


class BatchEngine(Protocol):
    """What the scheduler drives: the MuseTalk engine, or a fake in tests. The protocols
    below declare the optional abilities the scheduler uses where an engine has them."""

    def run_batch(self, jobs: Sequence[Any]) -> list[Any]: ...

    def max_batch_size(self) -> int: ...

    def warmup(self) -> float: ...


class BatchHandle(Protocol):
    """A submitted batch of a ``PipelinedEngine``."""

    def wait_computed(self) -> None:
        """Block until the device has computed the batch (its results may still be on
        their way to the host)."""


@runtime_checkable
class TimedHandle(Protocol):
    """A batch handle that measured the batch's device time (added to the stats)."""

    def device_seconds(self) -> float: ...


@runtime_checkable
class PipelinedEngine(BatchEngine, Protocol):
    """An engine whose batches are submitted and finished separately. ``submit_batch``
    returns a ``BatchHandle``."""

    def submit_batch(self, jobs: Sequence[Any]) -> Any: ...

    def finish_batch(self, handle: Any) -> list[Any]: ...


@runtime_checkable
class PaddedEngine(Protocol):
    """An engine that runs batches padded to fewer sizes: ``padded_size(n)`` is the batch
    size the device really runs for ``n`` jobs (capacity is measured in it)."""

    def padded_size(self, n: int) -> int: ...


@runtime_checkable
class ShrinkableEngine(Protocol):
    """An engine that must lower its own batch size after out-of-memory (a static graph
    padded to a fixed size)."""

    def shrink_batch(self, size: int) -> None: ...


@runtime_checkable
class AudioWarmingEngine(Protocol):
    """An engine whose audio-feature work warms up on the audio lane's thread at start."""

    def warmup_audio(self) -> None: ...


@runtime_checkable
class AudioLaneEngine(Protocol):
    """An engine with a context for audio-feature work on the audio lane (on CUDA: its
    own stream)."""

    def audio_lane(self) -> AbstractContextManager[None]: ...


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
class Request:
    deadline: float
    seq: int
    session: str
    frame_no: int
    job: Any
    future: Future[Any]
    followers: list[Request] = field(default_factory=list)

    def __lt__(self, other: Request) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


@dataclass(slots=True)
class InFlight:
    """A launched batch: a pipelined engine's handle, or a synchronous engine's results."""

    batch: list[Request]
    launched: float
    handle: BatchHandle | None = None
    results: list[Any] | None = None
    elapsed: float | None = None  # device time of the batch, once computed


@dataclass(slots=True)
class SessionState:
    fps: float
    last_seen: float
    last_frame: tuple[int, Any] | None = None
    pending: dict[int, Request] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class WorkQueue:
    """What a scheduler's callers and its worker thread share, all guarded by ``cond``: the
    queued frames (an EDF heap), each call's state, the functions queued for the worker, and
    whether the scheduler stopped taking work (closed, or stalled for good)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    heap: list[Request] = field(default_factory=list)
    sessions: dict[str, SessionState] = field(default_factory=dict)
    calls: deque[Job] = field(default_factory=deque)
    closed: bool = False
    stalled: RenderStalled | None = None

    @property
    def stopped(self) -> bool:
        return self.closed or self.stalled is not None

    def take_unresolved(self) -> list[Request]:
        """Take every request not yet resolved: queued or in a batch (lock held)."""
        reqs = {id(r): r for r in self.heap}
        for state in self.sessions.values():
            reqs.update((id(r), r) for r in state.pending.values())
            state.pending.clear()
        self.heap = []
        return list(reqs.values())


def demand(sessions: Iterable[SessionState], now: float, horizon: float) -> float:
    """Frames per second the active calls ask for: those with frames pending or a request
    within the last ``horizon`` seconds."""
    return sum(s.fps for s in sessions if s.pending or now - s.last_seen < horizon)


def take_batch(
    heap: list[Request],
    sessions: dict[str, SessionState],
    stats: SchedulerStats,
    *,
    now: float,
    cap: int,
    stride: int,
    drop_late_s: float,
) -> list[Request]:
    """Pop up to ``cap`` runnable requests from ``heap`` (earliest deadline first). A frame
    off the stride's grid follows its anchor frame (or repeats the call's last frame); a
    frame later than ``drop_late_s`` repeats the call's last frame."""
    batch: list[Request] = []
    while heap and len(batch) < cap:
        req = heapq.heappop(heap)
        state = sessions.get(req.session)
        if state is None or req.future.cancelled():
            if state is not None:
                state.pending.pop(req.frame_no, None)
            continue
        anchor_no = req.frame_no - req.frame_no % stride
        anchor = state.pending.get(anchor_no) if anchor_no != req.frame_no else None
        if anchor is not None:
            anchor.followers.append(req)
            state.pending.pop(req.frame_no, None)
            stats.repeated += 1
            continue
        late = now - req.deadline > drop_late_s
        if (late or (stride > 1 and anchor_no != req.frame_no)) and state.last_frame:
            state.pending.pop(req.frame_no, None)
            settle(req.future, state.last_frame[1])
            if late:
                stats.dropped_late += 1
            else:
                stats.repeated += 1
            continue
        batch.append(req)
    return batch
