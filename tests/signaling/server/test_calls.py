"""Call records through a real in-process server: a typed question becomes transcript and
reply rows, ``GET /calls`` answers operators only, the drain flushes the recorder, and a
call whose process died shows as ended abnormally after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from signaling.call.events import TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.client.bot import BotOptions, run_bot
from signaling.config import Settings
from signaling.records import ABNORMAL, CallQuery, open_store
from signaling.records.model import Event, Heartbeat, Started
from signaling.server.app import STATE, create_app, drain
from signaling.stages.services import Services
from tests.signaling.records.databases import postgres_schema

KEY = "operator-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calls.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


def _settings(settings: Settings, url: str) -> Settings:
    return settings.model_validate(
        {
            **settings.model_dump(),
            "records": {"url": url},
            "access": {"operator_keys": [KEY]},
        }
    )


async def _start(app: Any) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, f"http://127.0.0.1:{server.port}"


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_a_typed_call_is_recorded_and_listed_for_operators(
    settings: Settings, fake_services: Services, records_url: str
) -> None:
    app = create_app(_settings(settings, records_url), services=fake_services)
    server, url = await _start(app)
    try:
        report = await run_bot(BotOptions(url=url, text="When are you open?", timeout_s=20))
        assert not report.errors, report.errors
        call_id = report.session
        assert call_id
        for _ in range(100):  # the bot hung up: the call closes
            if not app[STATE].sessions:
                break
            await asyncio.sleep(0.05)
        await drain(app, timeout_s=0)  # what SIGTERM runs: it flushes the recorder

        # Written by the time the drain returns: read the database directly.
        store = open_store(records_url, data_dir=Path("."))
        record = await asyncio.to_thread(store.get_call, call_id, now=time.time())
        store.close()
        assert record is not None
        assert record.call.outcome == "completed"
        said = [(line["who"], line["text"]) for line in record.transcript()]
        assert ("caller", "When are you open?") in said
        assert ("agent", "We are open from nine to five. See you soon.") in said
        assert any(e.kind == "timings" and e.data["stages"] for e in record.events)

        status, body = await _get(url + "/calls")
        assert status == 401 and "operator key" in body["error"]
        status, body = await _get(url + "/calls", {"Authorization": "Bearer wrong-key-000000000"})
        assert status == 401 and "not an operator key" in body["error"]
        status, body = await _get(url + "/calls?q=nine%20to%20five", AUTH)
        assert status == 200
        [listed] = body["calls"]
        assert listed["id"] == call_id and listed["outcome"] == "completed"
        assert listed["turns"] == 1 and listed["avatar"] == "astronaut"
        status, body = await _get(url + "/calls?outcome=timeout", AUTH)
        assert body["calls"] == []
        status, body = await _get(url + "/calls?since=1h&until=2999-01-01", AUTH)
        assert [c["id"] for c in body["calls"]] == [call_id]
        status, body = await _get(url + f"/calls/{call_id}", {"X-API-Key": KEY})
        assert status == 200 and body["transcript"][0]["who"] in ("caller", "agent")
        assert (await _get(url + "/calls/nope", AUTH))[0] == 404
        status, body = await _get(url + "/calls?since=yesterday", AUTH)
        assert status == 400 and "ISO 8601" in body["error"]
        status, body = await _get(url + "/calls?limit=5000", AUTH)
        assert status == 400
    finally:
        await server.close()


async def test_a_call_cut_off_by_a_crash_shows_ended_abnormally_after_a_restart(
    settings: Settings, fake_services: Services, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    # What a crashed process left: a call started, one turn, no end; last seen long ago.
    long_ago = time.time() - 3600
    info = CallInfo("lost", "astronaut", "en", long_ago, "k")
    store = open_store(url, data_dir=tmp_path)
    store.write(
        [
            Heartbeat("dead-node", long_ago),
            Started(info, node="dead-node"),
            Event("lost", long_ago + 5, TranscriptEvent("Are you there?", "en", 1)),
        ]
    )
    app = create_app(_settings(settings, url), services=fake_services)
    server, base = await _start(app)
    try:
        status, body = await _get(base + "/calls?outcome=ended-abnormally", AUTH)
        assert status == 200
        assert [c["id"] for c in body["calls"]] == ["lost"]
        await drain(app, timeout_s=0)
        [call] = store.list_calls(CallQuery(), now=time.time())  # ended in the database
        assert call.outcome == ABNORMAL and call.ended_at == pytest.approx(long_ago + 5)
    finally:
        await server.close()
        store.close()


async def test_records_can_be_turned_off(
    settings: Settings, fake_services: Services, tmp_path: Path
) -> None:
    unused = tmp_path / "unused.sqlite3"
    s = _settings(settings, f"sqlite:///{unused}")
    s = s.model_copy(update={"records": s.records.model_copy(update={"enabled": False})})
    app = create_app(s, services=fake_services)
    server, url = await _start(app)
    try:
        status, body = await _get(url + "/calls", AUTH)
        assert status == 404 and "records.enabled" in body["error"]
    finally:
        await server.close()
    assert not await asyncio.to_thread(unused.exists)
