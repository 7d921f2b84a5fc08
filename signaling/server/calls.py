"""Call records in the server: the recorder that observes every call (started with the app,
flushed by the drain, closed with it), the retention task, and ``GET /calls`` and
``GET /calls/{id}`` for operators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter

from signaling.call.session import Session
from signaling.metrics import Metrics
from signaling.records.factory import open_store
from signaling.records.model import CallQuery, parse_time
from signaling.records.recorder import CallRecorder, RecorderMetrics, RecorderOptions
from signaling.records.store import NODE_TIMEOUT_S, CallStore
from signaling.server.operators import require_operator
from signaling.server.recordings import RECORDINGS_DIR, CallRecordings
from signaling.server.state import AppState

__all__ = [
    "RECORDINGS",
    "RECORDS",
    "ServerRecords",
    "flush_records",
    "install_records",
    "is_recorded",
    "start_recording",
]

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0  # how often old calls are deleted (and abandoned ones ended)


@dataclass
class ServerRecords:
    """The app's call records: a recorder writing, a store reading."""

    recorder: CallRecorder
    reader: CallStore
    retention_days: int
    data_dir: Path
    recordings_dir: Path | None = None  # records.media: this node's recordings
    task: asyncio.Task[None] | None = None


RECORDS: web.AppKey[ServerRecords] = web.AppKey("avatar_rtc_records", ServerRecords)
RECORDINGS: web.AppKey[CallRecordings] = web.AppKey("avatar_rtc_recordings", CallRecordings)


def install_records(app: web.Application, state: AppState) -> None:
    """Add the ``/calls`` routes and, when ``records.enabled``, a recorder of every call."""
    app.router.add_get("/calls", _list_calls)
    app.router.add_get("/calls/{call_id}", _get_call)
    app.router.add_get("/calls/{call_id}/recording", _get_recording)
    settings = state.settings
    if settings.records.media:
        _install_recordings(app, state)
    if not settings.records.enabled:
        return
    url, data_dir = settings.records.url, settings.data_dir
    node = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    recorder = CallRecorder(
        open_store(url, data_dir=data_dir), RecorderOptions(node=node), _metrics(state.metrics)
    )
    reader = open_store(url, data_dir=data_dir)
    state.observers.add(recorder)
    recordings_dir = data_dir / RECORDINGS_DIR if settings.records.media else None
    app[RECORDS] = ServerRecords(
        recorder, reader, settings.records.retention_days, data_dir, recordings_dir
    )
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)


def _install_recordings(app: web.Application, state: AppState) -> None:
    def actions() -> CallRecorder | None:
        records = app.get(RECORDS)
        return None if records is None else records.recorder

    recordings = CallRecordings(state.settings.data_dir, metrics=state.metrics, actions=actions)
    app[RECORDINGS] = recordings

    async def stop_recordings(_: web.Application) -> None:
        await recordings.stop_all()

    app.on_shutdown.append(stop_recordings)


def start_recording(app: web.Application, session: Session) -> bool:
    """Record the call's media when ``records.media`` is on; True when it is recorded."""
    recordings = app.get(RECORDINGS)
    return recordings is not None and recordings.start(session)


def is_recorded(app: web.Application, call_id: str) -> bool:
    recordings = app.get(RECORDINGS)
    return recordings is not None and call_id in recordings.active


def _metrics(metrics: Metrics) -> RecorderMetrics:
    if not metrics.enabled:
        return RecorderMetrics()
    return RecorderMetrics(
        write_errors=Counter(
            "avatar_records_write_errors_total",
            "Failed writes of call records (the records are kept and retried)",
            registry=metrics.registry,
        ),
        dropped=Counter(
            "avatar_records_dropped_total",
            "Call record operations that were never written",
            registry=metrics.registry,
        ),
    )


async def _start(app: web.Application) -> None:
    records = app[RECORDS]
    records.recorder.start()
    records.task = asyncio.create_task(_upkeep(records))


async def _upkeep(records: ServerRecords) -> None:
    """Now and every hour: end the calls of processes that died, delete expired calls."""
    while True:
        now = time.time()
        records.recorder.close_abandoned(now - NODE_TIMEOUT_S)
        if records.retention_days > 0:
            cutoff = now - records.retention_days * 86400.0
            records.recorder.purge(cutoff)
            if records.recordings_dir is not None:
                await asyncio.to_thread(purge_recordings, records.recordings_dir, cutoff)
        await asyncio.sleep(RETENTION_EVERY_S)


def purge_recordings(folder: Path, before: float) -> int:
    """Delete the recordings last written before ``before`` (their calls started before it,
    so retention deletes their records too); returns how many. A file that cannot be
    deleted is logged and left."""
    deleted = 0
    for path in folder.glob("*.mkv") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < before:
                path.unlink()
                deleted += 1
        except OSError as exc:
            log.error("retention: cannot delete the recording %s: %s", path, exc)
    if deleted:
        log.info("retention: %d recording(s) older than the cut-off deleted", deleted)
    return deleted


async def _stop(app: web.Application) -> None:
    records = app[RECORDS]
    if records.task is not None:
        records.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await records.task
    await records.recorder.aclose()
    await asyncio.to_thread(records.reader.close)


async def flush_records(app: web.Application, *, timeout_s: float = 5.0) -> None:
    """Wait (bounded) until every call event so far is in the database."""
    records = app.get(RECORDS)
    if records is not None and not await records.recorder.aflush(timeout_s):
        log.error("call records: not all written within %.0f s of the drain", timeout_s)


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _records(request: web.Request) -> ServerRecords:
    require_operator(request)
    records = request.app.get(RECORDS)
    if records is None:
        raise web.HTTPNotFound(
            text='{"error": "call records are turned off (records.enabled: false)"}',
            content_type="application/json",
        )
    return records


def _query(params: Mapping[str, str], *, now: float) -> CallQuery:
    def when(key: str) -> float | None:
        return parse_time(params[key], now=now) if params.get(key) else None

    def number(key: str, default: int) -> int:
        try:
            return int(params.get(key, default))
        except ValueError:
            raise ValueError(f"{key} must be a whole number") from None

    return CallQuery(
        since=when("since"),
        until=when("until"),
        outcome=params.get("outcome") or None,
        text=params.get("q") or None,
        limit=number("limit", 50),
        offset=number("offset", 0),
    )


async def _list_calls(request: web.Request) -> web.Response:
    """``GET /calls?since=&until=&outcome=&q=&limit=&offset=``: newest first."""
    records = _records(request)
    now = time.time()
    try:
        query = _query(request.query, now=now)
    except ValueError as exc:
        return _json_error(400, str(exc))
    try:
        calls = await asyncio.to_thread(records.reader.list_calls, query, now=now)
    except Exception as exc:
        return _unavailable(records, exc)
    more = len(calls) == query.limit
    return web.json_response(
        {
            "calls": [c.to_json() for c in calls],
            "limit": query.limit,
            "offset": query.offset,
            "next_offset": query.offset + len(calls) if more else None,
        }
    )


async def _get_call(request: web.Request) -> web.Response:
    """``GET /calls/{id}``: the call in full (transcript, timings, events, outcome)."""
    records = _records(request)
    call_id = request.match_info["call_id"]
    try:
        record = await asyncio.to_thread(records.reader.get_call, call_id, now=time.time())
    except Exception as exc:
        return _unavailable(records, exc)
    if record is None:
        return _json_error(404, "no such call")
    return web.json_response(record.to_json())


async def _get_recording(request: web.Request) -> web.StreamResponse:
    """``GET /calls/{id}/recording``: the call's media recording (Matroska) as a download;
    404 when the call was not recorded or its file is gone, 409 while it is recording."""
    records = _records(request)
    call_id = request.match_info["call_id"]
    try:
        record = await asyncio.to_thread(records.reader.get_call, call_id, now=time.time())
    except Exception as exc:
        return _unavailable(records, exc)
    link = None if record is None else record.recording()
    if record is None or link is None or not isinstance(link.get("file"), str):
        return _json_error(404, "this call has no media recording")
    if link.get("status") == "recording":
        return _json_error(409, "the call is still being recorded")
    folder = (records.data_dir / RECORDINGS_DIR).resolve()
    path = (records.data_dir / link["file"]).resolve()
    if path.parent != folder or not path.is_file():  # another node's, or deleted
        return _json_error(404, "the recording file is not on this node (deleted or elsewhere)")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/x-matroska",
            "Content-Disposition": f'attachment; filename="{path.name}"',
        },
    )


def _unavailable(records: ServerRecords, exc: Exception) -> web.Response:
    log.error("call records: cannot read %s: %s: %s", records.reader.where, type(exc).__name__, exc)
    return _json_error(503, "call records are unavailable right now (see the server log)")
