"""scripts/bench_records.py runs and prints its numbers (not a measurement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_records_runs() -> None:
    command = [sys.executable, "scripts/bench_records.py", "--turns", "20", "--no-postgres"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sqlite" in done.stdout and "us/turn" in done.stdout
