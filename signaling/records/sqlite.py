"""Call records in a SQLite file: WAL mode (readers never wait for the writer), synchronous
NORMAL (a crash of the process loses no committed call; a power cut may lose the last)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from signaling.records.sql import Dialect
from signaling.records.store import Driver, SqlCallStore

__all__ = ["SQLITE", "sqlite_store"]

log = logging.getLogger(__name__)

SQLITE = Dialect(name="sqlite", real="REAL", serial="INTEGER PRIMARY KEY", placeholder="?")
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, ValueError, TypeError)


def _connect(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    if str(mode).lower() != "wal":
        log.warning("call records: %s is in journal mode %s, not WAL", path, mode)
    return conn


def sqlite_store(path: Path) -> SqlCallStore:
    """Records in the SQLite file ``path`` (its folder is created when first written)."""
    driver = Driver(dialect=SQLITE, connect=lambda: _connect(path), data_errors=_DATA_ERRORS)
    return SqlCallStore(driver, where=str(path))
