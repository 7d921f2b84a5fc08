"""The call observer that writes call records: the event loop only puts operations on a
bounded queue; one writer thread takes them off in batches, one transaction per batch.

When the database cannot be written (a read-only file, a full disk, a lost connection) the
writer logs one clear error, counts it, keeps the operations in memory (bounded: past
``max_pending`` the oldest are dropped and counted) and retries with a growing pause;
calls never notice. The writer also marks this process alive every ``heartbeat_s``, so
its open calls list as in progress, and a crashed process's as ended abnormally.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from signaling.call.events import ControlEvent
from signaling.call.observers import CallInfo
from signaling.records.model import (
    SKIPPED,
    Action,
    CloseAbandoned,
    Ended,
    Event,
    Heartbeat,
    Operation,
    Purge,
    Started,
)
from signaling.records.store import CallStore

__all__ = ["CallRecorder", "RecorderMetrics", "RecorderOptions"]

log = logging.getLogger(__name__)


class _Counter(Protocol):
    def inc(self, amount: float = 1.0) -> None: ...


class _Uncounted:
    def inc(self, amount: float = 1.0) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RecorderMetrics:
    write_errors: _Counter = field(default_factory=_Uncounted)  # failed batch writes
    dropped: _Counter = field(default_factory=_Uncounted)  # operations never written


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderOptions:
    node: str  # this process, as its heartbeats name it
    queue_size: int = 10_000  # operations waiting for the writer; past it new ones are dropped
    batch_size: int = 256  # operations per transaction
    linger_s: float = 0.05  # how long the first queued operation waits for others to join it
    max_pending: int = 100_000  # operations kept while the database fails
    retry_s: float = 1.0  # the pause after a failed write, doubled each time up to retry_max_s
    retry_max_s: float = 30.0
    heartbeat_s: float = 20.0

    def __post_init__(self) -> None:
        if min(self.queue_size, self.batch_size, self.max_pending) < 1:
            raise ValueError("queue_size, batch_size and max_pending must be positive")
        if not 0 < self.retry_s <= self.retry_max_s or self.heartbeat_s <= 0:
            raise ValueError("need 0 < retry_s <= retry_max_s and heartbeat_s > 0")
        if self.linger_s < 0:
            raise ValueError("linger_s must not be negative")


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_STOP = object()


class CallRecorder:
    """A :class:`~signaling.call.observers.CallObserver` writing to a :class:`CallStore`
    from its own thread. Call :meth:`start` before the first call, :meth:`close` after the
    last (it writes what is queued first)."""

    def __init__(
        self, store: CallStore, options: RecorderOptions, metrics: RecorderMetrics | None = None
    ) -> None:
        self.store = store
        self.options = options
        self.metrics = metrics or RecorderMetrics()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=options.queue_size)
        self._thread: threading.Thread | None = None
        self._writer = _Writer(store, options, self.metrics)
        self._full_warned = 0.0

    # -- the observer (on the event loop: never blocks) ------------------------------------

    def call_started(self, call: CallInfo) -> None:
        self._put(Started(call=call, node=self.options.node))

    def call_event(self, call_id: str, at: float, event: ControlEvent) -> None:
        if event.type not in SKIPPED:
            self._put(Event(call_id=call_id, at=at, event=event))

    def call_ended(self, call_id: str, at: float, outcome: str) -> None:
        self._put(Ended(call_id=call_id, at=at, outcome=outcome))

    def record_action(
        self,
        call_id: str,
        at: float,
        actor: str,
        action: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record what a person did to a call (the operator console calls this)."""
        op = Action(call_id=call_id, at=at, actor=actor, action=action, detail=dict(detail or {}))
        self._put(op)

    def purge(self, before: float) -> None:
        """Delete the calls that started before ``before`` (Unix seconds)."""
        self._put(Purge(before=before))

    def close_abandoned(self, seen_before: float) -> None:
        """End the open calls of every process not seen since ``seen_before``."""
        self._put(CloseAbandoned(seen_before=seen_before))

    def _put(self, op: Operation) -> None:
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            self.metrics.dropped.inc()
            now = time.monotonic()
            if now - self._full_warned > 10.0:
                self._full_warned = now
                log.error(
                    "call records: the write queue is full (%d operations); dropping new ones",
                    self.options.queue_size,
                )

    # -- the writer's lifetime ---------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """Whether the last write failed (operations are being kept for a retry)."""
        return self._writer.failing

    @property
    def backlog(self) -> int:
        """Operations taken off the queue and not written yet."""
        return self._writer.backlog_size

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._writer.run, args=(self._queue,), name="call-records", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every operation queued so far is written; False on timeout (the
        database is failing, or the writer is not running)."""
        if self._thread is None or not self._thread.is_alive():
            return self._queue.empty() and self._writer.backlog_size == 0
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout_s)
        except queue.Full:
            return False
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (one more try if the database is failing), then stop."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        atexit.unregister(self.close)
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            self._writer.stop_now = True
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("call records: the writer did not stop within %.0f s", timeout_s)

    async def aflush(self, timeout_s: float = 5.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout_s)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        await asyncio.to_thread(self.close, timeout_s)


class _Writer:
    """The writer thread's state: the backlog, the retry pause, the flush markers."""

    def __init__(self, store: CallStore, options: RecorderOptions, metrics: RecorderMetrics):
        self.store = store
        self.options = options
        self.metrics = metrics
        self.backlog: deque[Operation] = deque()
        self.failing = False
        self.stop_now = False
        self._taken = 0  # operations ever added to the backlog
        self._finished = 0  # ... and written or dropped since
        self._flushes: list[tuple[int, _Flush]] = []
        self._retry_at = 0.0
        self._pause = options.retry_s
        self._next_beat = 0.0
        self._since = 0.0  # when the backlog last became non-empty
        self._trimmed = False  # the oldest were dropped since the last good write

    @property
    def backlog_size(self) -> int:
        return len(self.backlog)

    def run(self, inbox: queue.Queue[Any]) -> None:
        stopping = False
        while not (stopping or self.stop_now):
            stopping = self._take(inbox, self._wait())
            self._beat()
            self._trim()
            if self.backlog and (stopping or self._due()):
                self._write_some()
            self._wake_flushes()
        self._finish()

    def _due(self) -> bool:
        """Whether to write now: a retry is due, a batch is full, a flush waits, or the
        oldest operation has lingered long enough."""
        return self._wait() <= 0.0

    def _wait(self) -> float:
        now = time.monotonic()
        if not self.backlog:
            return max(0.0, min(self._next_beat - now, self.options.heartbeat_s))
        if self.failing:
            return max(0.0, self._retry_at - now)
        if len(self.backlog) >= self.options.batch_size or self._flushes:
            return 0.0
        return max(0.0, self._since + self.options.linger_s - now)

    def _append(self, op: Operation) -> None:
        if not self.backlog:
            self._since = time.monotonic()
        self.backlog.append(op)
        self._taken += 1

    def _take(self, inbox: queue.Queue[Any], wait_s: float) -> bool:
        """Move what is queued to the backlog (waiting up to ``wait_s`` for the first);
        True when asked to stop."""
        items: list[Any] = []
        try:
            items.append(inbox.get(timeout=wait_s) if wait_s > 0 else inbox.get_nowait())
            while len(items) < self.options.batch_size:
                items.append(inbox.get_nowait())
        except queue.Empty:
            pass
        for item in items:
            if item is _STOP:
                return True
            if isinstance(item, _Flush):
                self._flushes.append((self._taken, item))
            else:
                self._append(item)
        return False

    def _beat(self) -> None:
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self.options.heartbeat_s
            self._append(Heartbeat(node=self.options.node, at=time.time()))

    def _trim(self) -> None:
        excess = len(self.backlog) - self.options.max_pending
        if excess <= 0:
            return
        for _ in range(excess):
            self.backlog.popleft()
        self._finished += excess
        self.metrics.dropped.inc(excess)
        if not self._trimmed:
            log.error(
                "call records: more than %d operations waiting for %s; dropping the oldest",
                self.options.max_pending,
                self.store.where,
            )
        self._trimmed = True

    def _write_some(self) -> bool:
        batch = list(islice(self.backlog, self.options.batch_size))
        try:
            self.store.write(batch)
        except Exception as exc:
            if self.store.transient(exc):
                self._failed(exc)
                return False
            self._write_one_by_one(batch)
        else:
            self._written(len(batch))
        return True

    def _written(self, count: int) -> None:
        for _ in range(count):
            self.backlog.popleft()
        self._finished += count
        if self.failing:
            self.failing = False
            log.warning("call records: writing to %s again", self.store.where)
        self._trimmed = False
        self._pause = self.options.retry_s
        self._retry_at = 0.0

    def _failed(self, exc: Exception) -> None:
        self.metrics.write_errors.inc()
        if not self.failing:
            log.error(
                "call records: cannot write to %s (%s: %s); calls go on, and their records "
                "are kept in memory (%d operations now, at most %d) and retried",
                self.store.where,
                type(exc).__name__,
                exc,
                len(self.backlog),
                self.options.max_pending,
            )
        self.failing = True
        self.store.reset()
        self._retry_at = time.monotonic() + self._pause
        self._pause = min(self._pause * 2.0, self.options.retry_max_s)

    def _write_one_by_one(self, batch: list[Operation]) -> None:
        """A batch the database refused for its data: keep each operation it accepts."""
        for op in batch:
            try:
                self.store.write([op])
            except Exception as exc:
                if self.store.transient(exc):
                    self._failed(exc)
                    return
                self.metrics.dropped.inc()
                log.error("call records: dropped an unwritable %s: %s", type(op).__name__, exc)
            self._written(1)

    def _wake_flushes(self) -> None:
        waiting = []
        for target, marker in self._flushes:
            if self._finished >= target:
                marker.done.set()
            else:
                waiting.append((target, marker))
        self._flushes = waiting

    def _finish(self) -> None:
        while self.backlog and not self.stop_now and self._write_some():
            pass
        if self.backlog:
            self.metrics.dropped.inc(len(self.backlog))
            log.error(
                "call records: %d operations could not be written to %s before stopping",
                len(self.backlog),
                self.store.where,
            )
        self._wake_flushes()
        self.store.close()
