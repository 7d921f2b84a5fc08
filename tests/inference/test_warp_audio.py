"""Mouth shapes from audio: frame count, silence, envelope tracking, attack/release, visemes."""

from __future__ import annotations

import numpy as np
import pytest

from inference.render.warp_audio import Viseme, mouth_curve, mouth_shapes

SR = 16000


def _tone(freqs: list[float], seconds: float, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = np.sum([np.sin(2 * np.pi * f * t) for f in freqs], axis=0) / len(freqs)
    return (amp * wave * 32767).astype(np.int16)


@pytest.mark.parametrize(("samples", "frames"), [(0, 0), (1, 1), (640, 1), (641, 2), (16000, 25)])
def test_frame_count(samples: int, frames: int) -> None:
    assert len(mouth_curve(np.zeros(samples, np.int16), 25)) == frames


def test_silence_keeps_the_mouth_closed() -> None:
    assert np.all(mouth_curve(np.zeros(SR, np.int16), 25) == 0)
    rng = np.random.default_rng(1)
    hiss = (rng.standard_normal(SR) * 30).astype(np.int16)  # about -60 dBFS
    assert np.all(mouth_curve(hiss, 25) == 0)


def test_opening_follows_the_envelope() -> None:
    t = np.arange(4 * SR) / SR
    envelope = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) * (0.3 + 0.7 * (t % 1.0))
    audio = (envelope * np.sin(2 * np.pi * 180 * t) * 0.5 * 32767).astype(np.int16)
    curve = mouth_curve(audio, 25)
    per_frame = envelope.reshape(-1, SR // 25).mean(axis=1)
    assert np.corrcoef(curve, per_frame)[0, 1] > 0.8
    assert curve.max() > 0.5 and curve.min() == 0.0


def test_attack_is_faster_than_release() -> None:
    audio = np.concatenate([np.zeros(SR // 2, np.int16), _tone([220], 0.6), np.zeros(SR, np.int16)])
    curve = mouth_curve(audio, 25)
    onset, offset = 12, 12 + 15  # frames where the tone starts and stops
    peak = curve[onset:offset].max()
    rise = int(np.argmax(curve[onset:] >= 0.8 * peak))
    fall = int(np.argmax(curve[offset:] <= 0.2 * peak))
    assert rise <= 2 and fall > rise
    assert curve[offset + 8 :].max() < 0.05, "closes again after the sound"


def _vowel(f1: float, f2: float, seconds: float = 0.5, pitch: float = 120.0) -> np.ndarray:
    """A crude vowel: harmonics of ``pitch`` shaped by two formant resonances."""
    t = np.arange(int(seconds * SR)) / SR
    wave = np.zeros_like(t)
    for k in range(1, int(4000 / pitch)):
        f = k * pitch
        gain = 1 / (1 + ((f - f1) / 90) ** 2) + 0.6 / (1 + ((f - f2) / 120) ** 2) + 0.01
        wave += gain * np.sin(2 * np.pi * f * t)
    return (0.4 * wave / np.abs(wave).max() * 32767).astype(np.int16)


def test_visemes_from_spectral_shape() -> None:
    open_vowel = mouth_shapes(_vowel(750, 1200), 25)  # a
    rounded = mouth_shapes(_vowel(320, 800), 25)  # u
    spread = mouth_shapes(_vowel(280, 2300), 25)  # i
    rng = np.random.default_rng(0)
    noise = np.diff(rng.standard_normal(SR // 2 + 1)) * 0.3  # high-passed noise, like /s/
    fricative = mouth_shapes((noise * 32767 / 3).astype(np.int16), 25)
    middle = slice(3, 10)
    assert np.all(open_vowel.visemes[middle] == Viseme.AA)
    assert np.all(rounded.visemes[middle] == Viseme.OO)
    assert np.all(spread.visemes[middle] == Viseme.EE)
    assert np.all(fricative.visemes[middle] == Viseme.SS)
    assert rounded.width[middle].mean() < -0.5 < 0.5 < spread.width[middle].mean()
    assert open_vowel.openness[middle].mean() > rounded.openness[middle].mean()
    assert fricative.openness[middle].mean() < spread.openness[middle].mean()


def test_bad_audio() -> None:
    with pytest.raises(ValueError, match="mono"):
        mouth_curve(np.zeros((2, 100), np.int16), 25)
    with pytest.raises(ValueError, match="int16 or float"):
        mouth_curve(np.zeros(100, np.int32), 25)
    with pytest.raises(ValueError, match="fps"):
        mouth_curve(np.zeros(100, np.int16), 0)
