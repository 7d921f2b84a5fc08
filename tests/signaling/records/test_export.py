"""``avatar-rtc calls export``: JSON lines and CSV, from the configured database."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from signaling.call.events import ReplyText, TranscriptEvent
from signaling.call.observers import CallInfo
from signaling.cli import main
from signaling.records import open_store
from signaling.records.model import Ended, Event, Heartbeat, Operation, Started


def _fill(url: str, data_dir: Path) -> float:
    now = time.time()
    ops: list[Operation] = [Heartbeat("n", now)]
    for i, ago in enumerate((3 * 86400, 3600, 60)):
        at, call_id = now - ago, f"call{i}"
        ops += [
            Started(CallInfo(call_id, "astronaut", "en", at, "kiosk"), node="n"),
            Event(call_id, at + 1, TranscriptEvent(f"question {i}, with a comma", "en", 1)),
            Event(call_id, at + 2, ReplyText("Line one.", "en", 1, 0)),
            Event(call_id, at + 2.5, ReplyText("Line two.", "en", 1, 1)),
            Ended(call_id, at + 5, "completed" if i != 1 else "timeout: no heartbeat"),
        ]
    store = open_store(url, data_dir=data_dir)
    store.write(ops)
    store.close()
    return now


def test_jsonl_holds_each_call_in_full(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(store_url, tmp_path)
    out = tmp_path / "calls.jsonl"
    args = ["calls", "export", "--url", store_url, "--since", "2d", "-o", str(out)]
    assert main(args) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [c["id"] for c in lines] == ["call1", "call2"]  # oldest first, since 2 days ago
    assert lines[0]["outcome"] == "timeout: no heartbeat"
    assert lines[0]["transcript"][1] == {
        "at": pytest.approx(lines[0]["started_at"] + 2),
        "who": "agent",
        "turn": 1,
        "language": "en",
        "text": "Line one. Line two.",
    }
    assert [e["type"] for e in lines[1]["events"]] == ["transcript", "reply_text", "reply_text"]
    assert "exported 2 call(s)" in capsys.readouterr().err

    assert main([*args[:-2], "--outcome", "timeout"]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["call1"]


def test_csv_has_one_row_per_call_from_the_configured_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AVATAR_RTC_DATA_DIR")  # the file says where, as in production
    data_dir = tmp_path / "data"
    now = _fill(f"sqlite:///{data_dir / 'calls.sqlite3'}", data_dir)
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {data_dir}\n", encoding="utf-8")  # records.url: the default
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 4 * 86400))
    args = ["calls", "export", "--config", str(config), "--since", since, "--format", "csv"]
    assert main(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["id"] for r in rows] == ["call0", "call1", "call2"]
    assert rows[0]["transcript"] == "caller: question 0, with a comma\nagent: Line one. Line two."
    assert rows[0]["started_at"].endswith("Z") and rows[0]["duration_s"] == "5.0"
    assert rows[0]["client"] == "kiosk" and rows[0]["turns"] == "1"


def test_a_missing_database_or_a_bad_time_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    assert main(["calls", "export", "--url", missing, "--since", "1d"]) == 2
    assert "no call records at" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite3").exists()  # nothing was created
    _fill(f"sqlite:///{tmp_path / 'c.sqlite3'}", tmp_path)
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    assert main(["calls", "export", "--url", url, "--since", "last week"]) == 2
    assert "not a time" in capsys.readouterr().err
