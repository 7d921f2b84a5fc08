"""scripts/bench_operator.py runs end to end on one line each way and reports both paths."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_bench_operator_runs(tmp_path: Path) -> None:
    out = tmp_path / "operator.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_operator.py", "--reps", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "operator voice -> caller" in proc.stdout and "load average" in proc.stdout
    result = json.loads(out.read_text())
    assert 0 < result["operator_ms"] < 5000 and 0 < result["agent_ms"] < 10000
    assert result["ratio"] == pytest.approx(result["operator_ms"] / result["agent_ms"], rel=0.01)
