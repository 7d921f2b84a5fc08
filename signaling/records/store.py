"""Where call records live: the :class:`CallStore` protocol and one SQL implementation over
any DB-API connection (SQLite and PostgreSQL differ only in how they connect).

A store is used by one thread at a time (its methods hold a lock): the recorder's writer
thread owns one; the server reads through another.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from signaling.records.model import (
    ABNORMAL,
    IN_PROGRESS,
    Action,
    CallQuery,
    CallRecord,
    CallSummary,
    CloseAbandoned,
    Ended,
    Event,
    EventRecord,
    EventRow,
    Heartbeat,
    Operation,
    Purge,
    Started,
    action_row,
    event_row,
)
from signaling.records.sql import Dialect, Statements, like_pattern

__all__ = [
    "NODE_TIMEOUT_S",
    "CallStore",
    "Driver",
    "SqlCallStore",
    "StoreError",
]

NODE_TIMEOUT_S = 60.0  # a process not seen for this long holds no live call


class StoreError(RuntimeError):
    """The records database cannot be opened or read; the message says where and why."""


class CallStore(Protocol):
    where: str  # the database, for messages (never a password)

    def write(self, ops: Sequence[Operation]) -> None: ...

    def record_action(
        self, call_id: str, at: float, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None: ...

    def list_calls(self, query: CallQuery, *, now: float) -> list[CallSummary]: ...

    def get_call(self, call_id: str, *, now: float) -> CallRecord | None: ...

    def transient(self, exc: BaseException) -> bool: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Driver:
    """What differs between databases: how to connect, and which errors are the data's."""

    dialect: Dialect
    connect: Callable[[], Any]  # a DB-API connection, not in autocommit mode
    data_errors: tuple[type[BaseException], ...]  # retrying the same rows cannot help


class SqlCallStore:
    """A :class:`CallStore` on a SQL database; connects on first use, again after
    :meth:`reset`, and creates its tables when it connects."""

    def __init__(self, driver: Driver, *, where: str) -> None:
        self.where = where
        self._driver = driver
        self._sql = Statements(driver.dialect)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._driver.connect()
            try:
                for statement in self._sql.schema():
                    conn.execute(statement)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write(self, ops: Sequence[Operation]) -> None:
        """Every operation in one transaction: all are kept, or none."""
        with self._lock:
            conn = self._connection()
            try:
                rows: list[tuple[Any, ...]] = []
                for op in ops:
                    if isinstance(op, Event | Action):
                        _add_row(rows, op)
                        continue
                    self._insert(conn, rows)
                    self._apply(conn, op)
                self._insert(conn, rows)
                conn.commit()
            except BaseException:
                self._rollback(conn)
                raise

    def _insert(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert the event rows gathered so far, in one round trip, and forget them."""
        if rows:
            conn.cursor().executemany(self._sql.insert_event(), rows)
            rows.clear()

    def _apply(self, conn: Any, op: Operation) -> None:
        s = self._sql
        match op:
            case Started(call=c, node=node):
                conn.execute(
                    s.insert_call(), (c.call_id, c.avatar, c.language, c.client, node, c.started_at)
                )
            case Ended(call_id=call_id, at=at, outcome=outcome):
                conn.execute(s.end_call(), (at, outcome, call_id, ABNORMAL))
            case Heartbeat(node=node, at=at):
                conn.execute(s.heartbeat(), (node, at))
            case CloseAbandoned(seen_before=seen_before):
                conn.execute(s.close_abandoned(), (ABNORMAL, seen_before))
            case Purge(before=before):
                for statement in s.purge():
                    conn.execute(statement, (before,))

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:
            self._drop()

    def record_action(
        self, call_id: str, at: float, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None:
        """Store what a person did to a call, now (the recorder queues the same thing)."""
        self.write([Action(call_id=call_id, at=at, actor=actor, action=action, detail=detail)])

    def list_calls(self, query: CallQuery, *, now: float) -> list[CallSummary]:
        """The calls ``query`` selects, newest first (oldest first for export)."""
        where, params = _conditions(query)
        head = [now - NODE_TIMEOUT_S, IN_PROGRESS, ABNORMAL]
        tail: list[Any] = []
        if query.outcome:
            tail += [query.outcome, like_pattern(query.outcome) + ":%"]
        tail += [query.limit, query.offset]
        sql = self._sql.list_calls(where, bool(query.outcome), oldest_first=query.oldest_first)
        return [_summary(r) for r in self._read(sql, (*head, *params, *tail))]

    def get_call(self, call_id: str, *, now: float) -> CallRecord | None:
        with self._lock:
            rows = self._fetch(
                self._sql.one_call(), (now - NODE_TIMEOUT_S, IN_PROGRESS, ABNORMAL, call_id)
            )
            if not rows:
                return None
            events = self._fetch(self._sql.events_of(), (call_id,))
        return CallRecord(call=_summary(rows[0]), events=tuple(_event(r) for r in events))

    def iter_records(
        self, query: CallQuery, *, now: float, page: int = 200
    ) -> Iterator[CallRecord]:
        """Every call ``query`` selects in full, oldest first, ``page`` calls per read."""
        q = replace(query, limit=page, offset=0, oldest_first=True)
        while True:
            calls = self.list_calls(q, now=now)
            for call in calls:
                record = self.get_call(call.call_id, now=now)
                if record is not None:
                    yield record
            if len(calls) < page:
                return
            q = replace(q, offset=q.offset + page)

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return self._fetch(sql, params)

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._connection()
        try:
            rows = conn.execute(sql, tuple(params)).fetchall()
            conn.commit()  # ends PostgreSQL's read transaction
            return list(rows)
        except BaseException:
            self._drop()  # the next read connects again
            raise

    def transient(self, exc: BaseException) -> bool:
        """Whether writing the same rows later may work (a read-only or full disk, a lost
        connection), rather than the rows being unwritable."""
        return not isinstance(exc, self._driver.data_errors)

    def reset(self) -> None:
        """Forget the connection (the next use opens a new one)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        self.reset()


def _conditions(query: CallQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        where.append("c.started_at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("c.started_at < ?")
        params.append(query.until)
    if query.text:
        where.append(Statements.words())
        params.append(f"%{like_pattern(query.text.lower())}%")
    return where, params


def _add_row(rows: list[tuple[Any, ...]], op: Event | Action) -> None:
    row: EventRow | None = event_row(op.event) if isinstance(op, Event) else action_row(op)
    if row is not None:
        rows.append(
            (op.call_id, op.at, row.kind, row.turn, row.who, row.text, row.language, row.data)
        )


def _summary(row: Sequence[Any]) -> CallSummary:
    call_id, avatar, language, client, started, ended, outcome, turns = row
    return CallSummary(
        call_id=call_id,
        avatar=avatar,
        language=language,
        client=client,
        started_at=float(started),
        ended_at=None if ended is None else float(ended),
        outcome=outcome or "",
        turns=int(turns),
    )


def _event(row: Sequence[Any]) -> EventRecord:
    at, kind, turn, who, text, language, data = row
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"raw": data}
    return EventRecord(
        at=float(at),
        kind=kind,
        turn=turn,
        who=who,
        text=text,
        language=language,
        data=payload if isinstance(payload, dict) else {"value": payload},
    )
