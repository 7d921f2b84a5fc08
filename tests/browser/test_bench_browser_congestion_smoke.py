"""scripts/bench_browser_congestion.py runs one call behind a real bottleneck and reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.harness import ROOT
from tests.harness.netns import unavailable_reason

pytestmark = pytest.mark.browser


def test_bench_browser_congestion_runs(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no network namespace here: {reason}")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "scripts/bench_browser_congestion.py", "--runs", "1"]
    cmd += ["--modes", "feedback", "--settle-s", "1", "--watch-s", "3", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step down ms" in proc.stdout
    (result,) = json.loads(out.read_text())
    assert result["mode"] == "feedback"
    assert result["concealed_audio_pct"] is not None and result["video_freezes"] >= 0
    assert result["step_down_ms"] is not None, "the server never stepped down under the cap"
