"""The fake TTS used by fast pipeline tests."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inference.tts import FakeTts, FakeTtsOptions, make_tts
from inference.tts.fake import fake_speech


async def test_chunks_per_sentence_and_final_flag() -> None:
    tts = FakeTts()
    chunks = [c async for c in tts.synthesize("Hello there. How can I help you today?")]
    assert [c.final for c in chunks] == [False, True]
    assert all(c.sample_rate == 16000 for c in chunks)
    assert tts.said == [("Hello there. How can I help you today?", "en")]


def test_deterministic_and_text_dependent() -> None:
    opts = FakeTtsOptions()
    a, b = fake_speech("Same text.", opts), fake_speech("Same text.", opts)
    assert np.array_equal(a, b)
    assert not np.array_equal(fake_speech("Other text.", opts), a)


def test_duration_proportional_to_text() -> None:
    opts = FakeTtsOptions(sample_rate=16000, seconds_per_char=0.05)
    short = fake_speech("x" * 20, opts)
    long = fake_speech("x" * 60, opts)
    assert len(short) == pytest.approx(16000 * 1.0, abs=2)
    assert len(long) == pytest.approx(3 * len(short), abs=3)
    zh = fake_speech("你好你好", opts)  # 4 characters x weight 3
    assert len(zh) == pytest.approx(16000 * 0.6, abs=2)


def test_speech_like_envelope() -> None:
    samples = fake_speech("This sentence has a speech-like envelope.", FakeTtsOptions())
    x = samples.astype(np.float64)
    assert abs(x[0]) < 50 and abs(x[-1]) < 50  # fades in and out
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)  # 20 ms frames
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() > 3000
    assert (rms < 0.2 * rms.max()).mean() > 0.1  # syllable gaps, not a steady tone
    assert np.abs(x).max() <= 32767 * 0.3 + 1


async def test_realtime_factor_paces_output() -> None:
    tts = FakeTts(FakeTtsOptions(realtime_factor=0.1, seconds_per_char=0.05))
    start = time.perf_counter()
    chunks = [c async for c in tts.synthesize("x" * 40)]  # 2 s of audio
    assert time.perf_counter() - start >= 0.19
    assert chunks[-1].duration_s == pytest.approx(2.0)


async def test_empty_text_and_validation() -> None:
    chunks = [c async for c in FakeTts().synthesize("")]
    assert len(chunks) == 1 and chunks[0].final and chunks[0].samples.size == 0
    with pytest.raises(ValueError, match="sample_rate"):
        FakeTtsOptions(sample_rate=100)
    assert isinstance(make_tts(FakeTtsOptions()), FakeTts)
