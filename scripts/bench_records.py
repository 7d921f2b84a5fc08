"""Database cost of call records, per turn, on SQLite and PostgreSQL.

    python scripts/bench_records.py                      # 2000 turns on each database
    python scripts/bench_records.py --turns 200 --no-postgres

A turn is what one reply writes: the caller's transcript, two reply sentences and the
stage timings (the UI state changes of a turn are not kept). Three numbers per database:

- ``loop``: microseconds the event loop spends per turn (the recorder's observer calls,
  which only queue);
- ``store``: microseconds per turn written alone, one transaction each (the cost with no
  batching: a quiet server);
- ``recorder``: microseconds per turn through the writer thread, batched as under load
  (wall time from the first queued turn to the flush, divided by the turns).

SQLite is a file in a temporary folder; PostgreSQL gets a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signaling.call.events import ReplyText, StateChanged, Timings, TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.records import CallRecorder, RecorderOptions, open_store
from signaling.records.model import Event, Operation, Started
from signaling.records.store import SqlCallStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
_STAGES = {"asr_done": 81.2, "first_sentence": 140.5, "first_audio": 210.0, "first_sent": 330.1}


def _turn_events(turn: int) -> list[object]:
    return [
        TranscriptEvent(text="What are your opening hours on Sunday?", language="en", turn=turn),
        StateChanged(state="thinking"),
        ReplyText(text="We are open from nine to five.", language="en", turn=turn, index=0),
        StateChanged(state="speaking"),
        ReplyText(text="On Sundays we open at ten.", language="en", turn=turn, index=1),
        Timings(turn=turn, stages=dict(_STAGES)),
        StateChanged(state="listening"),
    ]


def _store_us(store: SqlCallStore, turns: int) -> float:
    now = time.time()
    store.write([Started(CallInfo("bench-store", "astronaut", "en", now, "bench"), node="b")])
    began = time.perf_counter()
    for turn in range(turns):
        ops: list[Operation] = [
            Event("bench-store", now + turn, e)  # type: ignore[arg-type]
            for e in _turn_events(turn)
        ]
        store.write(ops)
    return (time.perf_counter() - began) / turns * 1e6


def _recorder_us(open_one: Callable[[], SqlCallStore], turns: int) -> tuple[float, float]:
    recorder = CallRecorder(open_one(), RecorderOptions(node="bench", queue_size=100_000))
    recorder.start()
    now = time.time()
    recorder.call_started(CallInfo("bench-rec", "astronaut", "en", now, "bench"))
    assert recorder.flush(30.0)
    events = [_turn_events(turn) for turn in range(turns)]
    began = time.perf_counter()
    loop_s = 0.0
    for turn, batch in enumerate(events):
        t = time.perf_counter()
        for event in batch:
            recorder.call_event("bench-rec", now + turn, event)  # type: ignore[arg-type]
        loop_s += time.perf_counter() - t
    if not recorder.flush(120.0):
        raise SystemExit("the recorder did not write everything within 120 s")
    total_s = time.perf_counter() - began
    recorder.close()
    return loop_s / turns * 1e6, total_s / turns * 1e6


@contextmanager
def _sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'calls.sqlite3'}"


@contextmanager
def _postgres(url: str) -> Iterator[str]:
    import psycopg

    schema = f"bench_records_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in url else "?"
            yield f"{url}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _measure(name: str, url: str, turns: int) -> None:
    store = open_store(url, data_dir=Path("."))
    store_us = _store_us(store, turns)
    store.close()
    loop_us, recorder_us = _recorder_us(lambda: open_store(url, data_dir=Path(".")), turns)
    print(
        f"{name:<10} loop {loop_us:7.1f} us/turn   store {store_us:8.1f} us/turn "
        f"(1 transaction each)   recorder {recorder_us:7.1f} us/turn (batched)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2000, help="turns per measurement")
    parser.add_argument("--postgres", default=PG_URL, help="PostgreSQL URL (a schema is made)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    print(f"{args.turns} turns; a turn = transcript + 2 reply sentences + timings", flush=True)
    with _sqlite() as url:
        _measure("sqlite", url, args.turns)
    if not args.no_postgres:
        with _postgres(args.postgres) as url:
            _measure("postgresql", url, args.turns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
