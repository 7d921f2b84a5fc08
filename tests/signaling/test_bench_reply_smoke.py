"""scripts/bench_reply.py runs end to end (real server, bot, fake LLM): a question asked twice
(clean, then over a telephone line) is a cache miss, then a hit."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_bench_reply_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_reply.py",
            *("--setups", "llm", "--sets", "flite-slt", "--n", "1", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "median/p90" in proc.stdout and "load average" in proc.stdout
    turns = json.loads((tmp_path / "turns.json").read_text())
    assert [t["round"] for t in turns] == ["miss", "hit"]
    for turn in turns:
        times = turn["times"]
        assert 0 < times["seen"] <= times["transcript"] <= times["dialogue"] < times["heard"]
        assert times["heard"] < 20000
    # the hit round skipped synthesis: its first audio came with its first sentence
    hit = turns[1]["times"]
    assert hit["tts"] - hit["dialogue"] < 50
