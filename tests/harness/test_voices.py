"""The test voices: 16 kHz int16 speech with silent edges, and its telephone copy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.harness import voices
from tests.harness.voices import VoiceUnavailable, speak, telephone


def test_speech_is_16k_int16_with_silent_edges() -> None:
    pcm = speak("espeak-en-us-200", "Where is my order?")
    assert pcm.dtype == np.int16 and 0.8 < pcm.size / 16000 < 4.0
    assert not pcm[:3200].any() and not pcm[-3200:].any()
    assert np.abs(pcm).max() > 20000


def test_telephone_copy_is_narrow_band_and_noisy() -> None:
    pcm = speak("espeak-en-us-200", "Where is my order?")
    line = telephone(pcm)
    assert line.dtype == np.int16 and line.size == pcm.size
    spectrum = np.abs(np.fft.rfft(line.astype(np.float64)))
    freqs = np.fft.rfftfreq(line.size, 1 / 16000)
    assert spectrum[freqs > 4500].sum() < 0.02 * spectrum.sum()  # nothing above 4 kHz
    assert line[:3200].any()  # the line hisses in the pauses too


def test_a_missing_synthesizer_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(VoiceUnavailable, match="flite"):
        speak("flite-slt", "hello")


def test_a_sentence_with_a_pause_holds_silence_where_it_says() -> None:
    pcm, resume_s = voices.with_pause("espeak-en-us-200", "Where is", "my order?", 0.4)
    resume = round(resume_s * 16000)
    gap = pcm[resume - round(0.4 * 16000) : resume]
    assert gap.size == 6400 and not gap.any()  # exactly the pause, silent
    assert np.abs(pcm[resume : resume + 1600]).max() > 327  # the second half starts at once
    assert not pcm[:3200].any() and not pcm[-3200:].any()
    with pytest.raises(ValueError, match="pause_s"):
        voices.with_pause("espeak-en-us-200", "a", "b", -1.0)
