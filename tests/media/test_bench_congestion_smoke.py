"""scripts/bench_congestion.py --quick runs and measures something real (not its targets)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_congestion.py",
            "--quick",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "p50/p95" in proc.stdout
    results = json.loads(out.read_text())
    assert [(r["scenario"], r["mode"]) for r in results] == [
        ("cap", "ours"),
        ("cap", "aiortc"),
        ("loss", "ours"),
        ("loss", "aiortc"),
    ]
    for r in results:
        read, total = map(int, r["stamps_read"].split("/"))
        assert total > 50 and read > 0.5 * total  # the stamps in the picture were decoded
        assert r["latency_ms_all"]["p50"] is not None
    ours_cap = results[0]
    assert ours_cap["rung_changes"][0][4] == "start"
    assert len(ours_cap["rung_changes"]) >= 2  # 400 kbps made the controller step down
    assert ours_cap["encoder"]["keyframes"] >= 1
    # the sender's reaction to the cap is found, and the gaps it excuses are among the gaps
    assert ours_cap["sender_reacted_after_onset_ms"] > 0
    excused = ours_cap["audio_gaps_sender_could_not_avoid"]
    assert 0 <= excused <= ours_cap["audio_gaps_over_100ms"] == len(ours_cap["audio_gaps"])
    assert all(len(gap) == 3 for gap in ours_cap["audio_gaps"])  # at, length, loop stall
    assert plot.stat().st_size > 10_000
