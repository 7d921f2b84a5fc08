"""scripts/bench_isolation.py runs: a tiny round against an in-process server, and --help."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web

from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.services import Services

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench_isolation.py"
Serve = Callable[[web.Application], Awaitable[str]]
pytestmark = pytest.mark.timeout(240)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_isolation_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "--calls" in proc.stdout and "--tiny" in proc.stdout


def test_every_misbehaviour_is_there_whatever_the_number_of_calls() -> None:
    bench = _load_script()
    kinds = "text,noise,reconnect"
    assert bench._behaviours(1, kinds) == [("text", "noise", "reconnect")]
    assert bench._behaviours(2, kinds) == [("text", "reconnect"), ("noise",)]
    assert bench._behaviours(3, kinds) == [("text",), ("noise",), ("reconnect",)]
    assert bench._behaviours(4, kinds)[3] == ("text",)
    assert bench._behaviours(2, "noise") == [("noise",), ("noise",)]


async def test_a_tiny_run_measures_the_bystander_in_each_condition(
    settings: Settings, fake_services: Services, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load_script()
    url = await serve(
        create_app(settings.model_copy(update={"max_sessions": 3}), services=fake_services)
    )
    args = argparse.Namespace(
        calls=2,
        rounds=1,
        behaviours="text,noise,reconnect",
        text_per_s=5.0,
        cache="off",
        lead_s=0.5,
        warm_up=False,
        timeout_s=30.0,
        server_pid=None,
    )
    result = await bench.run(url, args)
    (measured,) = result["rounds"]
    assert set(measured) == {"alone", "quiet", "misbehaving"}
    for condition in measured.values():
        assert condition["video_fps"] is not None, condition
        assert condition["reply_audio_latency_ms"] is not None, condition
    (crowd,) = result["misbehaviour"][0]  # one call doing all three at once
    assert crowd["behaviour"] == "text+noise+reconnect" and crowd["texts"] > 0
    assert crowd["bursts"] > 0 and crowd["reconnects"] + crowd["failures"] > 0
    summary = bench.summarize(result)
    bench.print_table(result, summary)
    table = capsys.readouterr().out
    assert "misbehaving/alone" in table and "video fps" in table
    assert set(summary["targets"]) == {
        "fps >= 24",
        "skew within 40 ms of alone",
        "latency <= 1.2x alone",
    }
