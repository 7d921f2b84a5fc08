"""Which store a records URL names: :func:`open_store`."""

from __future__ import annotations

from pathlib import Path

from signaling.records.postgres import postgres_store
from signaling.records.sqlite import sqlite_store
from signaling.records.store import SqlCallStore, StoreError

__all__ = ["open_store", "sqlite_path"]


def sqlite_path(url: str) -> Path | None:
    """The SQLite file ``url`` names (``sqlite:///rel``, ``sqlite:////abs``, a plain
    path), or None for a PostgreSQL URL."""
    if url.lower().startswith(("postgresql://", "postgres://")):
        return None
    if url.lower().startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if "://" in url:
        raise StoreError(f"unsupported records URL {url.split('://', 1)[0]}://...")
    return Path(url)


def open_store(url: str | None, *, data_dir: Path) -> SqlCallStore:
    """The store ``url`` names (None: ``calls.sqlite3`` in ``data_dir``). Nothing is opened
    until the store is first used."""
    path = data_dir / "calls.sqlite3" if url is None else sqlite_path(url)
    if path is None:
        assert url is not None
        return postgres_store(url)
    return sqlite_store(path)
