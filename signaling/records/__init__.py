"""Call records: each call's metadata, transcript, stage timings, handoffs, operator actions
and outcome, kept in SQLite (a file in the data folder) or PostgreSQL.

- :mod:`signaling.records.recorder`: the call observer; the loop queues, one thread writes.
- :mod:`signaling.records.store`: the store protocol and its SQL implementation;
  :mod:`~signaling.records.sqlite` and :mod:`~signaling.records.postgres` connect it, and
  :func:`~signaling.records.factory.open_store` picks one from a URL.
- :mod:`signaling.records.export`: ``avatar-rtc calls export``.
"""

from signaling.records.factory import open_store
from signaling.records.model import ABNORMAL, IN_PROGRESS, CallQuery, CallRecord, CallSummary
from signaling.records.recorder import CallRecorder, RecorderMetrics, RecorderOptions
from signaling.records.store import NODE_TIMEOUT_S, CallStore, SqlCallStore, StoreError

__all__ = [
    "ABNORMAL",
    "IN_PROGRESS",
    "NODE_TIMEOUT_S",
    "CallQuery",
    "CallRecord",
    "CallRecorder",
    "CallStore",
    "CallSummary",
    "RecorderMetrics",
    "RecorderOptions",
    "SqlCallStore",
    "StoreError",
    "open_store",
]
