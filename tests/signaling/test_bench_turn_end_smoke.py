"""scripts/bench_turn_end.py runs end to end (real Segmenter, EarlyAsr and Whisper base) on one
voice: the end of turn and transcript columns and the false cuts of the paused sentence."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_bench_turn_end_runs() -> None:
    args = ["--sets", "espeak-en-us-200", "--n", "1", "--pauses", "0.3", "--asr-ms", "100"]
    proc = subprocess.run(
        [sys.executable, "scripts/bench_turn_end.py", *args, "--configs", "160/300/0,120/400"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "load average at start" in out and "load average at end" in out
    for setting in ("160/300/0", "120/400"):
        question = re.search(rf"{re.escape(setting)}\s+en question\s+2\s+(\d+)/(\d+)\s+(\d+)/", out)
        assert question, out
        end, _, ready = (int(g) for g in question.groups())
        assert 0 < end <= 1500 and 0 < ready <= 3000
        assert re.search(rf"{re.escape(setting)}\s+en\s+pause\s+1\s.*\s[01]/1\s*$", out, re.M), out
