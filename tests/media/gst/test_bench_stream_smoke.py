"""scripts/bench_stream.py --quick runs and measures something real (not its targets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_stream.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU per stream" in proc.stdout and "recovery after" in proc.stdout
    results = json.loads(out.read_text())
    assert results["baseline_cores"] > 0 and results["talking_cores"] > 0
    assert len(results["recovery_s"]) == 1 and results["first_connect_s"] > 0
