"""The call and operations benchmarks run end to end on a tiny input (they are not tests of
the numbers: those are printed by the scripts on a quiet machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_bench_call_runs(server: str, tmp_path: Path) -> None:
    proc = run(
        [
            "scripts/bench_call.py",
            "--url",
            server,
            "--n",
            "1",
            "--barge-in",
            "0",
            "--timeout-s",
            "40",
            "--out",
            str(tmp_path),
        ],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reply_audio_latency_ms: median" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["summary"]["reply_audio_latency_ms"]) == 1


def test_bench_ops_runs() -> None:
    proc = run(["scripts/bench_ops.py", "--rounds", "1", "--calls", "1"], timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "overhead" in proc.stdout and "reply: on" in proc.stdout
