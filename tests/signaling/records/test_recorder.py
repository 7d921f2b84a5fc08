"""The recorder's writer thread: batches, flushes, and what happens when the database
cannot be written (a refusing store, a read-only file system, a full disk), when its queue
is full, and when the process dies mid-call."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from signaling.call.events import ReplyText, TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.records import ABNORMAL, IN_PROGRESS, NODE_TIMEOUT_S, CallQuery, open_store
from signaling.records.model import Operation
from signaling.records.recorder import CallRecorder, RecorderMetrics, RecorderOptions
from signaling.records.store import SqlCallStore

ROOT = Path(__file__).resolve().parents[3]


class Count:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Refusing:
    """A real store that refuses writes while ``error`` is set."""

    def __init__(self, inner: SqlCallStore) -> None:
        self.inner = inner
        self.where = inner.where
        self.error: Exception | None = None
        self.writes = 0

    def write(self, ops: Sequence[Operation]) -> None:
        if self.error is not None:
            raise self.error
        self.writes += 1
        self.inner.write(ops)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _options(**kw: float) -> RecorderOptions:
    return RecorderOptions(node="test", retry_s=0.05, retry_max_s=0.2, **kw)  # type: ignore[arg-type]


def _one_call(recorder: CallRecorder, call_id: str, *, end: bool = True) -> None:
    now = time.time()
    recorder.call_started(CallInfo(call_id, "astronaut", "en", now, "k"))
    recorder.call_event(call_id, now + 0.1, TranscriptEvent("Where is my order?", "en", 1))
    recorder.call_event(call_id, now + 0.2, ReplyText("On its way.", "en", 1, 0))
    if end:
        recorder.call_ended(call_id, now + 1, "completed")


def _texts(store: SqlCallStore, call_id: str) -> list[str | None]:
    record = store.get_call(call_id, now=time.time())
    assert record is not None, f"call {call_id} was not written"
    return [e.text for e in record.events]


def test_batches_are_written_and_flush_waits_for_them(sqlite_url: str, tmp_path: Path) -> None:
    recorder = CallRecorder(open_store(sqlite_url, data_dir=tmp_path), _options())
    recorder.start()
    for i in range(50):
        _one_call(recorder, f"c{i}")
    assert recorder.flush(5.0)
    reader = open_store(sqlite_url, data_dir=tmp_path)
    assert len(reader.list_calls(CallQuery(limit=100), now=time.time())) == 50
    assert _texts(reader, "c49") == ["Where is my order?", "On its way."]
    recorder.close()
    reader.close()


def test_a_backlog_larger_than_a_batch_is_written_whole(sqlite_url: str, tmp_path: Path) -> None:
    options = RecorderOptions(node="t", batch_size=7, linger_s=0.0)
    recorder = CallRecorder(open_store(sqlite_url, data_dir=tmp_path), options)
    for i in range(30):  # queued before the writer starts: it finds 120 at once
        _one_call(recorder, f"k{i}")
    recorder.start()
    assert recorder.flush(5.0)
    recorder.close()
    reader = open_store(sqlite_url, data_dir=tmp_path)
    calls = reader.list_calls(CallQuery(limit=100), now=time.time())
    assert len(calls) == 30 and all(c.outcome == "completed" for c in calls)
    assert all(len(_texts(reader, c.call_id)) == 2 for c in calls)
    reader.close()


def test_a_refused_write_is_logged_counted_kept_and_retried(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Refusing(open_store(sqlite_url, data_dir=tmp_path))
    store.error = sqlite3.OperationalError("attempt to write a readonly database")
    errors = Count()
    recorder = CallRecorder(store, _options(), RecorderMetrics(write_errors=errors))  # type: ignore[arg-type]
    recorder.start()
    with caplog.at_level(logging.ERROR, logger="signaling.records.recorder"):
        _one_call(recorder, "ro")  # the observer returns at once: the call goes on
        assert not recorder.flush(0.5)
    assert recorder.failing and recorder.backlog >= 4
    assert errors.value >= 2  # every failed attempt counts; one log line says so
    logged = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(logged) == 1
    assert str(store.where) in logged[0] and "readonly" in logged[0]
    assert "kept in memory" in logged[0]

    store.error = None  # writable again: nothing was lost
    assert recorder.flush(5.0)
    assert not recorder.failing
    reader = open_store(sqlite_url, data_dir=tmp_path)
    assert _texts(reader, "ro") == ["Where is my order?", "On its way."]
    recorder.close()
    reader.close()


def test_rows_kept_in_memory_are_bounded(sqlite_url: str, tmp_path: Path) -> None:
    store = Refusing(open_store(sqlite_url, data_dir=tmp_path))
    store.error = sqlite3.OperationalError("database or disk is full")
    dropped = Count()
    options = RecorderOptions(node="t", retry_s=0.05, retry_max_s=0.05, max_pending=10)
    recorder = CallRecorder(store, options, RecorderMetrics(dropped=dropped))  # type: ignore[arg-type]
    recorder.start()
    for i in range(10):
        _one_call(recorder, f"b{i}")  # 40 operations
    recorder.flush(0.5)
    assert recorder.backlog <= 10
    assert dropped.value >= 30
    store.error = None
    assert recorder.flush(5.0)
    reader = open_store(sqlite_url, data_dir=tmp_path)
    assert _texts(reader, "b9")  # the newest were kept
    recorder.close()
    reader.close()


def test_a_full_queue_drops_new_operations_without_blocking(
    sqlite_url: str, tmp_path: Path
) -> None:
    dropped = Count()
    options = RecorderOptions(node="t", queue_size=3)
    recorder = CallRecorder(
        open_store(sqlite_url, data_dir=tmp_path), options, RecorderMetrics(dropped=dropped)
    )  # not started: nobody empties the queue
    began = time.perf_counter()
    _one_call(recorder, "q")  # 4 operations
    assert time.perf_counter() - began < 0.05
    assert dropped.value == 1


def test_rows_the_database_refuses_for_their_data_are_dropped_alone(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = Refusing(open_store(sqlite_url, data_dir=tmp_path))
    dropped = Count()
    recorder = CallRecorder(store, _options(), RecorderMetrics(dropped=dropped))  # type: ignore[arg-type]
    recorder.start()
    store.error = sqlite3.IntegrityError("a row this database cannot take")
    _one_call(recorder, "p")
    time.sleep(0.2)
    store.error = None
    assert recorder.flush(5.0)
    assert dropped.value >= 1  # the batch that failed for its data was tried row by row
    recorder.close()


def test_close_writes_what_is_queued(sqlite_url: str, tmp_path: Path) -> None:
    recorder = CallRecorder(open_store(sqlite_url, data_dir=tmp_path), _options())
    recorder.start()
    _one_call(recorder, "last")
    recorder.close()
    reader = open_store(sqlite_url, data_dir=tmp_path)
    assert _texts(reader, "last") == ["Where is my order?", "On its way."]
    reader.close()


_CRASH = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from signaling.call.events import TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.records import CallRecorder, RecorderOptions, open_store

recorder = CallRecorder(open_store({url!r}, data_dir=Path(".")), RecorderOptions(node="crashy"))
recorder.start()
now = time.time()
recorder.call_started(CallInfo("crashed", "astronaut", "en", now, "k"))
recorder.call_event("crashed", now + 0.5, TranscriptEvent("Can you hear me?", "en", 1))
assert recorder.flush(5.0)
os._exit(9)  # no close, no atexit: as if the process were killed mid-call
"""


def test_a_process_that_dies_mid_call_leaves_a_call_that_ended_abnormally(
    sqlite_url: str, tmp_path: Path
) -> None:
    script = textwrap.dedent(_CRASH.format(root=str(ROOT), url=sqlite_url))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 9
    reader = open_store(sqlite_url, data_dir=tmp_path)
    now = time.time()
    [call] = reader.list_calls(CallQuery(), now=now)
    assert call.outcome == IN_PROGRESS  # its heartbeat is still fresh
    [call] = reader.list_calls(CallQuery(), now=now + NODE_TIMEOUT_S + 1)
    assert call.outcome == ABNORMAL
    assert _texts(reader, "crashed") == ["Can you hear me?"]  # what it wrote survived
    reader.close()


# -- a real read-only file system and a real full disk (root only: they mount a tmpfs) ----


@contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def test_a_read_only_database_keeps_the_records_until_it_is_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _tmpfs(tmp_path / "mnt", "4m") as mnt:
        url = f"sqlite:///{mnt / 'calls.sqlite3'}"
        seed = open_store(url, data_dir=mnt)
        seeder = CallRecorder(seed, _options())
        seeder.start()
        _one_call(seeder, "before")
        seeder.close()
        _remount(mnt, "ro")
        errors = Count()
        recorder = CallRecorder(
            open_store(url, data_dir=mnt), _options(), RecorderMetrics(write_errors=errors)
        )
        recorder.start()
        with caplog.at_level(logging.ERROR, logger="signaling.records.recorder"):
            _one_call(recorder, "during")
            assert not recorder.flush(0.5)
        assert errors.value >= 1
        assert any(str(mnt) in r.getMessage() for r in caplog.records)
        _remount(mnt, "rw")
        assert recorder.flush(5.0)
        recorder.close()
        reader = open_store(url, data_dir=mnt)
        assert _texts(reader, "before") and _texts(reader, "during")
        reader.close()


def test_a_full_disk_keeps_the_records_until_there_is_room(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "mnt", "1m") as mnt:
        url = f"sqlite:///{mnt / 'calls.sqlite3'}"
        errors = Count()
        recorder = CallRecorder(
            open_store(url, data_dir=mnt), _options(), RecorderMetrics(write_errors=errors)
        )
        recorder.start()
        _one_call(recorder, "first")
        assert recorder.flush(5.0)
        filler = mnt / "filler"
        with pytest.raises(OSError), filler.open("wb") as f:
            f.write(b"\0" * 2 * 1024 * 1024)
        now = time.time()
        recorder.call_started(CallInfo("big", "astronaut", "en", now, "k"))
        for turn in range(40):
            recorder.call_event("big", now + turn, TranscriptEvent("x" * 2000, "en", turn))
        assert not recorder.flush(0.5)
        assert errors.value >= 1 and recorder.failing
        filler.unlink()
        assert recorder.flush(5.0)
        recorder.close()
        reader = open_store(url, data_dir=mnt)
        assert len(_texts(reader, "big")) == 40
        reader.close()
