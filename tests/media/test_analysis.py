"""Tests of media.analysis on synthetic speech-like audio and a synthetic talking mouth."""

from __future__ import annotations

import numpy as np
import pytest

from media.analysis import (
    Envelope,
    audio_envelope,
    av_skew_ms,
    first_mouth_moving_frame,
    mouth_audio_correlation,
    mouth_motion,
    mouth_openness,
    mouth_rois,
    reply_onset,
    silence_onset,
    speech_threshold,
)

SR = 48_000
BOX = (0.3, 0.6, 0.7, 0.9)


def _syllables(t: np.ndarray, start: float, stop: float, seed: int = 1) -> np.ndarray:
    """A speech-like 0..1 envelope: random syllables of 120-300 ms with short gaps."""
    rng = np.random.default_rng(seed)
    env = np.zeros_like(t)
    s = start
    while s < stop:
        d = rng.uniform(0.12, 0.3)
        amp = rng.uniform(0.4, 1.0)
        inside = (t >= s) & (t < min(s + d, stop))
        env[inside] = amp * np.sin(np.pi * (t[inside] - s) / d)
        s += d + rng.uniform(0.03, 0.2)
    return env


def _audio(start: float, stop: float, total: float, noise: float = 1e-4):
    """Chunks of 20 ms (int16) with arrival times; speech-like tone from start to stop."""
    n = int(total * SR)
    t = np.arange(n) / SR
    rng = np.random.default_rng(0)
    x = 0.3 * _syllables(t, start, stop) * np.sin(2 * np.pi * 220 * t)
    x += noise * rng.standard_normal(n)
    pcm = np.clip(x * 32768, -32768, 32767).astype(np.int16)
    chunks = [pcm[i : i + 960] for i in range(0, n, 960)]
    arrival = [(i + 960) / SR + 100.0 for i in range(0, n, 960)]
    return chunks, arrival


def _mouth_video(start: float, stop: float, total: float, lag_s: float, size=(96, 128)):
    """Grey frames at 25 fps: a dark mouth whose opening follows the audio envelope."""
    ft = np.arange(0, total, 0.04)
    opening = _syllables(ft - lag_s, start, stop)
    h, w = size
    frames = []
    for k, o in enumerate(opening):
        img = np.full((h, w), 180.0)
        img[int(0.3 * h) : int(0.4 * h), int(0.4 * w) : int(0.6 * w)] = 60 + 5 * (k % 2)  # an eye
        cy, half = int(0.75 * h), 1 + int(o * 0.12 * h)
        img[cy - half : cy + half, int(0.38 * w) : int(0.62 * w)] = 30.0
        frames.append(img)
    return ft + 100.0, frames


def test_envelope_windows_and_gaps() -> None:
    chunks = [np.full(960, 0.5), np.full(960, 0.5)]
    env = audio_envelope(chunks, [1.02, 1.2], sample_rate=SR, window_s=0.04)
    assert env.t[0] == pytest.approx(1.0)
    assert env.rms[0] == pytest.approx(0.5)
    assert 0.0 in env.rms  # the gap between the chunks
    with pytest.raises(ValueError, match="mono"):
        audio_envelope([np.zeros((2, 960))], [1.0], sample_rate=SR)


def test_reply_onset_and_silence_onset() -> None:
    chunks, arrival = _audio(start=1.5, stop=3.0, total=4.0)
    env = audio_envelope(chunks, arrival, sample_rate=SR)
    onset = reply_onset(env, after_t=100.5)
    assert onset is not None
    assert onset - 100.0 == pytest.approx(1.5, abs=0.06)
    # a lone 40 ms click is not a reply
    click = Envelope(np.arange(20) * 0.04, np.where(np.arange(20) == 5, 0.5, 0.0), 0.04)
    assert reply_onset(click, after_t=0.0) is None
    thr = speech_threshold(env, 100.5)
    quiet = silence_onset(env, after_t=101.6, threshold=thr)
    assert quiet is not None
    assert quiet - 100.0 == pytest.approx(3.0, abs=0.1)
    # short syllable gaps (< 200 ms) inside the speech are not silence
    assert silence_onset(env, after_t=101.55, threshold=thr) == quiet


def test_mouth_motion_is_size_independent() -> None:
    _, small = _mouth_video(0.5, 2.0, 2.5, 0.0, size=(96, 128))
    _, large = _mouth_video(0.5, 2.0, 2.5, 0.0, size=(192, 256))
    a, b = mouth_motion(small, BOX), mouth_motion(large, BOX)
    assert a[0] == 0.0
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert np.mean(np.abs(a - b)) < 0.2 * np.mean(a)
    with pytest.raises(ValueError, match="mouth box"):
        mouth_motion(small, (0.5, 0.5, 0.4, 0.9))


@pytest.mark.parametrize("lag_ms", [-120.0, 0.0, 80.0, 240.0])
def test_av_skew_recovers_known_lag(lag_ms: float) -> None:
    chunks, arrival = _audio(start=1.0, stop=7.0, total=8.0)
    env = audio_envelope(chunks, arrival, sample_rate=SR)
    ft, frames = _mouth_video(1.0, 7.0, 8.0, lag_ms / 1000.0)
    motion = mouth_motion(frames, BOX)
    skew = av_skew_ms(ft, motion, env, 100.5, 107.5, kind="motion")
    assert skew is not None
    assert skew == pytest.approx(lag_ms, abs=25.0)
    rois = mouth_rois(frames, BOX)
    openness = mouth_openness(rois, rest=ft < 100.9)
    skew_open = av_skew_ms(ft, openness, env, 100.5, 107.5)
    assert skew_open is not None
    assert skew_open == pytest.approx(lag_ms, abs=25.0)


def test_correlation_matched_beats_shuffled_control() -> None:
    chunks, arrival = _audio(start=1.0, stop=7.0, total=8.0)
    env = audio_envelope(chunks, arrival, sample_rate=SR)
    ft, frames = _mouth_video(1.0, 7.0, 8.0, 0.04)
    motion = mouth_motion(frames, BOX)
    matched, control = mouth_audio_correlation(ft, motion, env, 100.8, 107.2)
    assert matched > 0.4
    assert matched > control + 0.25
    # a mouth that ignores the audio correlates no better than the control
    _, other = _mouth_video(1.0, 7.0, 8.0, 0.0)
    rng = np.random.default_rng(5)
    unrelated = mouth_motion([other[i] for i in rng.permutation(len(other))], BOX)
    m2, _ = mouth_audio_correlation(ft, unrelated, env, 100.8, 107.2)
    assert m2 < matched - 0.3


def test_openness_follows_the_jaw_and_beats_the_control() -> None:
    chunks, arrival = _audio(start=1.0, stop=7.0, total=8.0)
    env = audio_envelope(chunks, arrival, sample_rate=SR)
    ft, frames = _mouth_video(1.0, 7.0, 8.0, 0.0)
    rois = mouth_rois(frames, BOX)
    openness = mouth_openness(rois, rest=ft < 100.9)
    assert openness[ft < 100.9].max() < 0.5  # at rest
    matched, control = mouth_audio_correlation(ft, openness, env, 100.8, 107.2)
    assert matched > 0.7
    assert matched > control + 0.4
    with pytest.raises(ValueError, match="one boolean per region"):
        mouth_openness(rois, rest=np.ones(3, bool))
    with pytest.raises(ValueError, match="kind"):
        av_skew_ms(ft, openness, env, 100.5, 107.5, kind="lips")


def test_first_mouth_moving_frame_ignores_idle_motion() -> None:
    ft, frames = _mouth_video(2.0, 4.0, 5.0, 0.0)
    # idle breathing: the whole face shifts by a pixel every other frame
    frames = [np.roll(f, k % 2, axis=0) if ft[k] < 102.0 else f for k, f in enumerate(frames)]
    motion = mouth_motion(frames, BOX)
    t = first_mouth_moving_frame(ft, motion, after_t=101.5)
    assert t is not None
    assert 102.0 <= t <= 102.2
    assert first_mouth_moving_frame(ft[:40], motion[:40], after_t=101.0) is None
