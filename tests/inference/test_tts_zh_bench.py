"""``scripts/bench_tts_zh.py`` runs and reports its numbers (a smoke test, not a target)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_tts_zh.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tts_zh", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_tts_zh_tiny_runs(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| kokoro:zm_yunxi |" in done.stdout
    [row] = json.loads(out.read_text())
    assert row["engine"] == "kokoro:zm_yunxi" and row["chars"] > 40
    assert 0.0 <= row["cer"] < 0.6  # a voice one can follow, loosely
    assert row["rtf"] > 0 and row["audio_s"] > 5 and row["first_audio_median_s"] > 0


def test_the_metric_and_the_pinyin_input() -> None:
    bench = _bench()
    edit_distance, normalise, to_pinyin = bench.edit_distance, bench.normalise, bench.to_pinyin
    assert edit_distance("订单满五十", "订单满五时") == 1
    assert edit_distance("", "你好") == 2 and edit_distance("你好", "") == 2
    same = str
    assert normalise("訂單：滿50美元！", same) == "訂單滿五十美元"
    assert to_pinyin("您好，再见。") == "nin2 hao3, zai4 jian4."
