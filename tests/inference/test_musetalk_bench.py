"""The render benchmark runs end to end (tiny models, CPU, smoke numbers only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_render_quick_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "scripts/bench_render.py", "--arch", "tiny", "--device", "cpu"]
    cmd += ["--quick", "--size", "256x192", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for needle in ("(a) reference", "(b) ours", "GFLOP per frame", "quality", "largest number"):
        assert needle in text
