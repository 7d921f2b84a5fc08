"""scripts/bench_reply.py runs end to end (real server, bot, fake LLM) and reports both rounds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_bench_reply_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_reply.py",
            "--only",
            "llm",
            "--n",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cache miss" in proc.stdout and "cache hit" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    for round_name in ("miss", "hit"):
        latencies = summary["llm"][round_name]["reply_audio_latency_ms"]
        assert len(latencies) == 1 and 0 < latencies[0] < 20000
    # the hit round skipped synthesis: its first audio came with its first sentence
    stages = summary["llm"]["hit"]["stages"]
    assert stages["first_audio"][0] - stages["first_sentence"][0] < 50
