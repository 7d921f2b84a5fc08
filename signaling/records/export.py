"""``avatar-rtc calls export``: call records as JSON lines (each call in full) or CSV (one
row per call, its transcript in one column), read straight from the configured database."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from signaling.records.factory import open_store, sqlite_path
from signaling.records.model import CallQuery, CallRecord, iso_time, parse_time
from signaling.records.store import SqlCallStore, StoreError

__all__ = ["CSV_COLUMNS", "main", "write_csv", "write_jsonl"]

CSV_COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "duration_s",
    "outcome",
    "avatar",
    "language",
    "client",
    "turns",
    "transcript",
)


def write_jsonl(records: Iterable[CallRecord], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(records: Iterable[CallRecord], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        call = record.call.to_json()
        lines = [f"{line['who']}: {line['text']}" for line in record.transcript()]
        call["started_at"] = iso_time(record.call.started_at)
        call["ended_at"] = iso_time(record.call.ended_at)
        call["transcript"] = "\n".join(lines)
        writer.writerow(["" if call[c] is None else call[c] for c in CSV_COLUMNS])
        count += 1
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-rtc calls", description="Call records.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "export",
        help="write the records of the calls that started in a time range",
        description="Export call records from the configured database (records.url).",
    )
    ex.add_argument("--config", type=Path, help="YAML configuration file (for records.url)")
    ex.add_argument("--url", help="the records database, instead of the configuration's")
    ex.add_argument(
        "--since", required=True, help="ISO 8601 time or date (UTC), Unix seconds, or 7d/24h ago"
    )
    ex.add_argument("--until", help="as --since (default: now)")
    ex.add_argument("--outcome", help="only this outcome (e.g. completed, timeout)")
    ex.add_argument("--text", help="only calls where either side said this")
    ex.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ex.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    return parser


def _store(args: argparse.Namespace) -> SqlCallStore:
    from signaling.config import load_settings

    settings = load_settings(args.config)
    url = args.url or settings.records.url
    path = settings.data_dir / "calls.sqlite3" if url is None else sqlite_path(url)
    if path is not None and not path.is_file():
        raise StoreError(f"no call records at {path}")
    return open_store(url, data_dir=settings.data_dir)


def _export(args: argparse.Namespace) -> int:
    now = time.time()
    query = CallQuery(
        since=parse_time(args.since, now=now),
        until=parse_time(args.until, now=now) if args.until else None,
        outcome=args.outcome,
        text=args.text,
    )
    store = _store(args)
    write = write_jsonl if args.format == "jsonl" else write_csv
    try:
        records = store.iter_records(query, now=now)
        if args.output is None:
            count = write(records, sys.stdout)
        else:
            with args.output.open("w", encoding="utf-8", newline="") as out:
                count = write(records, out)
    finally:
        store.close()
    print(f"avatar-rtc: exported {count} call(s) from {store.where}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from signaling.config import ConfigError

    try:
        return _export(args)
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"avatar-rtc: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database: unreachable, unreadable
        print(
            f"avatar-rtc: cannot read the call records: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
