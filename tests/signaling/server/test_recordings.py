"""Media recording per call through the real server (``records.media``): the caller is told,
the file holds the call, the call record links it; a folder that cannot be written is logged,
counted and recorded, and the call goes on."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import av
from aiohttp.test_utils import TestServer

from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.records import open_store
from signaling.server.app import STATE, create_app, drain
from signaling.server.calls import RECORDINGS, flush_records, is_recorded, purge_recordings
from signaling.stages.services import Services

OPERATOR_KEY = "operator-key-for-recordings-0123"


def _settings(settings: Settings, data_dir: Path, *, media: bool = True) -> Settings:
    return settings.model_validate(
        {
            **settings.model_dump(),
            "data_dir": data_dir,
            "records": {"media": media},
            "access": {**settings.access.model_dump(), "operator_keys": [OPERATOR_KEY]},
        }
    )


async def test_a_recorded_call_is_told_written_and_linked(
    settings: Settings, fake_services: Services, tmp_path: Path
) -> None:
    app = create_app(_settings(settings, tmp_path), services=fake_services)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
            await call.wait_connected()
            assert is_recorded(app, call.session_id)  # the /offer answer says so (the page)
            assert "nine" in await call.ask("When are you open?")
            call_id = call.session_id
        for _ in range(100):
            if not app[RECORDINGS].active:
                break
            await asyncio.sleep(0.05)
        await flush_records(app)
        # operators download it; nobody else does
        async with aiohttp.ClientSession() as http:
            download = f"{url}/calls/{call_id}/recording"
            async with http.get(download) as r:
                assert r.status == 401
            headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
            async with http.get(download, headers=headers) as r:
                assert r.status == 200 and r.content_type == "video/x-matroska"
                assert f"{call_id}.mkv" in r.headers["Content-Disposition"]
                downloaded = await r.read()
            async with http.get(f"{url}/calls/nosuch/recording", headers=headers) as r:
                assert r.status == 404
        await drain(app, timeout_s=0)
    finally:
        await server.close()
    path = tmp_path / "recordings" / f"{call_id}.mkv"
    assert downloaded == path.read_bytes()
    summary = app[RECORDINGS].finished[call_id]
    assert summary.failure is None and summary.seconds > 1.0 and summary.video_frames > 25
    with av.open(str(path)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "audio", "video"]
    store = open_store(None, data_dir=tmp_path)
    record = await asyncio.to_thread(store.get_call, call_id, now=time.time())
    store.close()
    assert record is not None
    link = record.to_json()["recording"]
    assert link["file"] == f"recordings/{call_id}.mkv" and link["status"] == "complete"
    assert (tmp_path / link["file"]).stat().st_size == link["bytes"] > 0


async def test_an_unwritable_recordings_folder_leaves_the_call_unrecorded(
    settings: Settings, fake_services: Services, tmp_path: Path
) -> None:
    (tmp_path / "recordings").write_text("a file where the folder should be")
    app = create_app(_settings(settings, tmp_path), services=fake_services)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
            await call.wait_connected()
            assert not is_recorded(app, call.session_id)  # not told what is not so
            assert "nine" in await call.ask("When are you open?")  # the call goes on
            call_id = call.session_id
        registry = app[STATE].metrics.registry
        assert registry.get_sample_value("avatar_errors_total", {"kind": "recording"}) == 1
        await drain(app, timeout_s=0)
    finally:
        await server.close()
    store = open_store(None, data_dir=tmp_path)
    record = await asyncio.to_thread(store.get_call, call_id, now=time.time())
    store.close()
    assert record is not None
    link = record.to_json()["recording"]
    assert link["status"] == "failed" and "recordings" in link["error"]


def test_retention_deletes_recordings_older_than_the_cut_off(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    old, new, other = folder / "old.mkv", folder / "new.mkv", folder / "notes.txt"
    for path in (old, new, other):
        path.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 40 * 86400, now - 40 * 86400))
    os.utime(other, (now - 40 * 86400, now - 40 * 86400))
    assert purge_recordings(folder, now - 30 * 86400) == 1
    assert not old.exists() and new.exists() and other.exists()  # only recordings, only old
    assert purge_recordings(tmp_path / "none", now) == 0  # no folder: nothing to do
