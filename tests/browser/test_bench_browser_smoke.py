"""scripts/bench_browser.py runs one call against the test server and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.harness import ROOT

pytestmark = pytest.mark.browser


def test_bench_browser_runs(server: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "scripts/bench_browser.py", "--url", server, "--calls", "1"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "click → first frame" in proc.stdout and "median over calls" in proc.stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["calls"] == 1
    assert 0 < summary["first_frame_ms"] < 10_000
    assert summary["fps"] is not None and summary["fps"] > 5
    assert summary["audioDelayMs"] is not None and summary["videoDelayMs"] is not None
