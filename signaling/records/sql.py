"""The SQL of the call records, shared by SQLite and PostgreSQL: written with ``?``
placeholders; a dialect names its column types and its placeholder."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Dialect", "Statements"]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    real: str  # a float column
    serial: str  # an auto-numbered primary key column
    placeholder: str  # what ``?`` becomes

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS avatar_calls (
        id TEXT PRIMARY KEY, avatar TEXT NOT NULL, language TEXT NOT NULL,
        client TEXT NOT NULL, node TEXT NOT NULL, started_at {real} NOT NULL,
        ended_at {real}, outcome TEXT)""",
    "CREATE INDEX IF NOT EXISTS avatar_calls_started ON avatar_calls (started_at)",
    "CREATE INDEX IF NOT EXISTS avatar_calls_open ON avatar_calls (node) WHERE ended_at IS NULL",
    """CREATE TABLE IF NOT EXISTS avatar_call_events (
        id {serial}, call_id TEXT NOT NULL, at {real} NOT NULL, kind TEXT NOT NULL,
        turn INTEGER, who TEXT, text TEXT, language TEXT, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS avatar_call_events_call ON avatar_call_events (call_id, at)",
    "CREATE INDEX IF NOT EXISTS avatar_call_events_at ON avatar_call_events (at)",
    "CREATE TABLE IF NOT EXISTS avatar_nodes (id TEXT PRIMARY KEY, seen_at {real} NOT NULL)",
)

_ALIVE = "EXISTS (SELECT 1 FROM avatar_nodes n WHERE n.id = {node} AND n.seen_at >= ?)"

# Parameters: alive-since, in-progress, ended-abnormally (then the filters').
_SUMMARY = f"""SELECT c.id, c.avatar, c.language, c.client, c.started_at, c.ended_at,
    CASE WHEN c.ended_at IS NOT NULL THEN c.outcome
         WHEN {_ALIVE.format(node="c.node")} THEN ? ELSE ? END AS outcome,
    (SELECT COUNT(*) FROM avatar_call_events t
      WHERE t.call_id = c.id AND t.kind = 'transcript') AS turns
    FROM avatar_calls c"""

_WORDS = """EXISTS (SELECT 1 FROM avatar_call_events w WHERE w.call_id = c.id
    AND w.text IS NOT NULL AND LOWER(w.text) LIKE ? ESCAPE '\\')"""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the store runs, in one dialect."""

    dialect: Dialect

    def schema(self) -> list[str]:
        d = self.dialect
        return [s.format(real=d.real, serial=d.serial) for s in _SCHEMA]

    def insert_call(self) -> str:
        return self.dialect.sql(
            "INSERT INTO avatar_calls (id, avatar, language, client, node, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )

    def end_call(self) -> str:
        """ended_at, outcome, id, abnormal: a late real end replaces an abnormal one."""
        return self.dialect.sql(
            "UPDATE avatar_calls SET ended_at = ?, outcome = ?"
            " WHERE id = ? AND (ended_at IS NULL OR outcome = ?)"
        )

    def insert_event(self) -> str:
        return self.dialect.sql(
            "INSERT INTO avatar_call_events (call_id, at, kind, turn, who, text, language, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def heartbeat(self) -> str:
        return self.dialect.sql(
            "INSERT INTO avatar_nodes (id, seen_at) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"
        )

    def close_abandoned(self) -> str:
        """abnormal, alive-since."""
        return self.dialect.sql(
            "UPDATE avatar_calls SET outcome = ?, ended_at = COALESCE("
            "(SELECT MAX(e.at) FROM avatar_call_events e WHERE e.call_id = avatar_calls.id),"
            " started_at) WHERE ended_at IS NULL AND NOT " + _ALIVE.format(node="avatar_calls.node")
        )

    def purge(self) -> list[str]:
        """Each takes the cut-off time once."""
        return [
            self.dialect.sql(s)
            for s in (
                "DELETE FROM avatar_call_events WHERE call_id IN"
                " (SELECT id FROM avatar_calls WHERE started_at < ?)",
                "DELETE FROM avatar_call_events WHERE at < ?",
                "DELETE FROM avatar_calls WHERE started_at < ?",
                "DELETE FROM avatar_nodes WHERE seen_at < ?",
            )
        ]

    def list_calls(self, where: list[str], outcome: bool, *, oldest_first: bool) -> str:
        """The summaries matching ``where`` (conditions on ``c``), then the outcome filter
        (outcome, outcome-prefix pattern), then limit and offset."""
        inner = _SUMMARY + (" WHERE " + " AND ".join(where) if where else "")
        order = "ASC" if oldest_first else "DESC"
        text = f"SELECT * FROM ({inner}) listed"
        if outcome:
            text += " WHERE (outcome = ? OR outcome LIKE ? ESCAPE '\\')"
        text += f" ORDER BY started_at {order}, id {order} LIMIT ? OFFSET ?"
        return self.dialect.sql(text)

    def one_call(self) -> str:
        return self.dialect.sql(_SUMMARY + " WHERE c.id = ?")

    def events_of(self) -> str:
        return self.dialect.sql(
            "SELECT at, kind, turn, who, text, language, data FROM avatar_call_events"
            " WHERE call_id = ? ORDER BY at, id"
        )

    @staticmethod
    def words() -> str:
        """The condition "either side said these words" (one pattern parameter)."""
        return _WORDS


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching itself literally (``\\`` escapes)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
