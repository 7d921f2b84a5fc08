"""``scripts/bench_offline.py`` runs and reports its numbers (a smoke test, not a target)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_offline_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--seconds", "2", "--rows", "1", "--height", "128", "--json", str(out)]
    args += ["--avatars-dir", str(tmp_path / "avatars")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_offline.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "s of video per second" in done.stdout
    numbers = json.loads(out.read_text())
    assert numbers["audio"]["video_s"] == 2.0 and numbers["audio"]["speed_x"] > 0
    assert numbers["script"]["rows"] == 1 and numbers["resume"]["skipped"] == 1
    assert numbers["split"]["size"] == [128, 128]
