"""The SQL store on real databases (SQLite and PostgreSQL): what a call writes, how it
lists and filters, calls whose process died, retention, events of unknown kinds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from signaling.call.events import ControlEvent, ReplyText, StateChanged, Timings, TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.records import ABNORMAL, IN_PROGRESS, NODE_TIMEOUT_S, CallQuery, open_store
from signaling.records.model import (
    CloseAbandoned,
    Ended,
    Event,
    Heartbeat,
    Operation,
    Purge,
    Started,
    parse_time,
)
from signaling.records.store import SqlCallStore

T0 = 1_800_000_000.0  # a fixed "now" for every test


@dataclass(frozen=True, slots=True)
class HandoffLike(ControlEvent):
    """A kind of event the records module has never heard of."""

    type: ClassVar[str] = "handoff_test"
    to: str
    reason: str


def _call(call_id: str, at: float, node: str = "n1") -> Operation:
    info = CallInfo(call_id=call_id, avatar="astronaut", language="en", started_at=at, client="k")
    return Started(call=info, node=node)


def _turn(call_id: str, at: float, turn: int, asked: str, said: list[str]) -> list[Operation]:
    ops: list[Operation] = [
        Event(call_id, at, TranscriptEvent(text=asked, language="en", turn=turn)),
        Event(call_id, at + 0.1, StateChanged(state="thinking")),
    ]
    for i, text in enumerate(said):
        ops.append(Event(call_id, at + 0.2 + i / 10, ReplyText(text, "en", turn, i)))
    ops.append(Event(call_id, at + 1.0, Timings(turn=turn, stages={"asr_done": 80.0})))
    return ops


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[SqlCallStore]:
    s = open_store(store_url, data_dir=tmp_path)
    yield s
    s.close()


def test_a_call_reads_back_as_written(store: SqlCallStore) -> None:
    ops = [Heartbeat("n1", T0), _call("a", T0)]
    ops += _turn("a", T0 + 1, 1, "When are you open?", ["From nine.", "To five."])
    ops += [Event("a", T0 + 3, HandoffLike(to="alice", reason="asked for a person"))]
    said = ReplyText("Alice here, how can I help?", "en", 1, 0, speaker="operator")
    ops += [Event("a", T0 + 5, said), Ended("a", T0 + 9, "completed")]
    store.write(ops)
    store.record_action("a", T0 + 4, "alice", "took over", {"note": "VIP"})

    record = store.get_call("a", now=T0 + 10)
    assert record is not None
    assert record.call.outcome == "completed" and record.call.turns == 1
    assert record.call.ended_at == T0 + 9
    assert [(line["who"], line["text"]) for line in record.transcript()] == [
        ("caller", "When are you open?"),
        ("agent", "From nine. To five."),
        ("operator", "Alice here, how can I help?"),  # in their own voice, transcribed
    ]
    kinds = [e.kind for e in record.events]
    assert "state" not in kinds  # UI state changes are not kept
    assert kinds == [
        *("transcript", "reply_text", "reply_text", "timings", "handoff_test", "action"),
        "reply_text",
    ]
    timings, handoff, action = record.events[3], record.events[4], record.events[5]
    assert timings.data["stages"] == {"asr_done": 80.0}
    assert handoff.data == {"to": "alice", "reason": "asked for a person"}  # kept generically
    assert (action.who, action.text, action.data) == ("alice", "took over", {"note": "VIP"})
    assert store.get_call("nope", now=T0) is None


def test_filters_and_pages(store: SqlCallStore) -> None:
    ops: list[Operation] = [Heartbeat("n1", T0 + 490)]
    for i in range(5):
        ops.append(_call(f"c{i}", T0 + i * 100))
        ops += _turn(f"c{i}", T0 + i * 100 + 1, 1, f"question {i} about 100% refunds_", ["Sure."])
    ops += [Ended("c0", T0 + 50, "completed"), Ended("c1", T0 + 150, "timeout: no heartbeat")]
    ops += [Ended("c2", T0 + 250, "completed")]
    store.write(ops)
    now = T0 + 500

    def ids(**kw: object) -> list[str]:
        return [c.call_id for c in store.list_calls(CallQuery(**kw), now=now)]  # type: ignore[arg-type]

    assert ids() == ["c4", "c3", "c2", "c1", "c0"]  # newest first
    assert ids(since=T0 + 100, until=T0 + 300) == ["c2", "c1"]
    assert ids(outcome="completed") == ["c2", "c0"]
    assert ids(outcome="timeout") == ["c1"]  # the part before ':'
    assert ids(outcome="in-progress") == ["c4", "c3"]  # their process is alive
    assert ids(text="QUESTION 3") == ["c3"]  # either side's words, any case
    assert ids(text="100% refunds_") == ids()  # % and _ are literal
    assert ids(text="100x") == []
    assert ids(limit=2, offset=1) == ["c3", "c2"]
    assert ids(oldest_first=True, limit=2) == ["c0", "c1"]


def test_a_call_whose_process_died_ends_abnormally(store: SqlCallStore) -> None:
    store.write([Heartbeat("dead", T0), _call("x", T0, node="dead")])
    store.write(_turn("x", T0 + 1, 1, "hello?", ["Hi."]))
    store.write([Heartbeat("alive", T0 + 100), _call("y", T0 + 100, node="alive")])
    now = T0 + 100 + NODE_TIMEOUT_S / 2
    listed = {c.call_id: c.outcome for c in store.list_calls(CallQuery(), now=now)}
    assert listed == {"x": ABNORMAL, "y": IN_PROGRESS}  # shown so when listed

    store.write([CloseAbandoned(seen_before=now - NODE_TIMEOUT_S)])  # what a start does
    record = store.get_call("x", now=now)
    assert record is not None and record.call.outcome == ABNORMAL
    assert record.call.ended_at == pytest.approx(T0 + 1.2)  # its last event
    # A late real end (the process was only cut off from the database) wins.
    store.write([Ended("x", T0 + 30, "completed")])
    assert store.list_calls(CallQuery(outcome="completed"), now=now)[0].call_id == "x"


def test_retention_deletes_old_calls_and_their_events(store: SqlCallStore) -> None:
    ops: list[Operation] = [_call("old", T0 - 10 * 86400), _call("new", T0 - 86400)]
    ops += _turn("old", T0 - 10 * 86400 + 1, 1, "old words", ["old reply"])
    ops += _turn("new", T0 - 86400 + 1, 1, "new words", ["new reply"])
    store.write([*ops, Purge(before=T0 - 7 * 86400)])
    assert [c.call_id for c in store.list_calls(CallQuery(), now=T0)] == ["new"]
    assert store.get_call("old", now=T0) is None
    assert store.list_calls(CallQuery(text="old words"), now=T0) == []


def test_odd_text_is_stored(store: SqlCallStore) -> None:
    odd = "nul\x00 surrogate\ud800 中文 \"quotes\" 'single' ? %s"
    store.write([_call("o", T0), Event("o", T0, TranscriptEvent(odd, "zh", 1))])
    record = store.get_call("o", now=T0)
    assert record is not None
    assert record.events[0].text == "nul\ufffd surrogate\ufffd 中文 \"quotes\" 'single' ? %s"
    assert record.call.call_id == "o"


def test_a_failed_transaction_keeps_nothing(store: SqlCallStore) -> None:
    class Boom(ControlEvent):
        type: ClassVar[str] = "boom"

        def to_json(self) -> dict[str, object]:
            raise RuntimeError("cannot encode")

    with pytest.raises(RuntimeError):
        store.write([_call("half", T0), Event("half", T0, Boom())])
    assert store.get_call("half", now=T0) is None
    store.write([_call("whole", T0)])  # the store is usable afterwards
    assert store.get_call("whole", now=T0) is not None


def test_sqlite_is_in_wal_mode(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url, data_dir=tmp_path)
    store.write([_call("w", T0)])
    store.close()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_default_database_is_a_file_in_the_data_folder(tmp_path: Path) -> None:
    store = open_store(None, data_dir=tmp_path / "data")
    store.write([_call("d", T0)])
    store.close()
    assert (tmp_path / "data" / "calls.sqlite3").is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15", 1_799_971_200.0),
        ("2027-01-15T08:00Z", 1_800_000_000.0),
        ("2027-01-15T09:00+01:00", 1_800_000_000.0),
        ("1800000000", 1_800_000_000.0),
        ("24h", T0 - 86400),
        ("7d", T0 - 7 * 86400),
        ("90m", T0 - 5400),
    ],
)
def test_times_are_read_in_several_forms(text: str, expected: float) -> None:
    assert parse_time(text, now=T0) == expected


def test_a_bad_time_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday", now=T0)
