"""bench_congestion tells the audio gaps no sender avoids (voice sent before it could know of
the cap) from the ones after its reaction, on a FIFO bottleneck simulated packet by packet."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

ROOT = Path(__file__).resolve().parents[3]
CAP_BPS = 400_000
ONSET = 5.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_congestion", ROOT / "scripts" / "bench_congestion.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_congestion", module)
    spec.loader.exec_module(module)
    return module


def _fifo(sends: list[tuple[float, int, str]]) -> list[tuple[float, float]]:
    """(send time, voice arrival) of each voice packet through a link that is free before the
    onset and CAP_BPS with a FIFO queue from it (1 ms of propagation)."""
    free_at, out = 0.0, []
    for t, size, kind in sorted(sends):
        if t < ONSET:
            done = t
        else:
            done = max(t, free_at) + size * 8 / CAP_BPS
            free_at = done
        if kind == "voice":
            out.append((t, done + 0.001))
    return out


def test_gaps_before_the_reaction_are_split_from_later_ones() -> None:
    bench = _bench()
    reacted = ONSET + 0.1
    sends: list[tuple[float, int, str]] = [(k * 0.02, 120, "voice") for k in range(400)]
    for k in range(200):  # 25 fps of 10 kB frames until the sender reacts, then a pause
        t = k * 0.04
        if t < reacted or t > ONSET + 1.5:
            sends.append((t + 0.001, 10_000 if t < reacted else 800, "video"))
    sends.append((ONSET + 1.51, 12_000, "video"))  # a keyframe well after the reaction
    voice = _fifo(sends)
    trace = bench.Trace()
    trace.audio = [arrival for _, arrival in voice]
    trace.audio_pts = [round((sent + 0.25) * 48000) for sent, _ in voice]  # any origin
    loop = SimpleNamespace(changes=[(reacted, None, "remb")], drains=[(reacted, 0.8, True)])

    assert bench._reaction(trace, ONSET, [], loop) == reacted
    gaps = [b - a for a, b in zip(trace.audio, trace.audio[1:], strict=False) if b - a > 0.1]
    forced = bench._forced_gaps(trace, 0.0, ONSET, reacted)
    assert len(forced) >= 2  # each 10 kB frame sent before it knew: ~200 ms on the link
    assert all(g > 0.15 for g in forced)
    assert len(gaps) - len(forced) == 1  # the keyframe after the reaction could be paced
    # without a reaction nothing is excused
    assert bench._forced_gaps(trace, 0.0, ONSET, None) == []
