"""The misbehaving callers' parts: noise the VAD takes for speech, validated options."""

from __future__ import annotations

import numpy as np
import pytest

from inference.audio import resample_int16
from media.vad import Segmenter, SpeechStarted, UtteranceReady
from signaling.client.bot_audio import MIC_RATE
from signaling.client.misbehave import MisbehaveOptions, noise


def test_noise_bursts_are_utterances_to_the_segmenter() -> None:
    burst = noise(0.8, seed=3)
    assert burst.dtype == np.int16 and burst.size == round(0.8 * MIC_RATE)
    gap = np.zeros(round(0.7 * MIC_RATE), np.int16)
    audio = resample_int16(np.concatenate([burst, gap, burst, gap]), MIC_RATE, 16000)
    segmenter = Segmenter()
    events = []
    for k in range(len(audio) // 320):
        events += segmenter.push(audio[k * 320 : (k + 1) * 320], (k + 1) * 0.02)
    assert sum(isinstance(e, SpeechStarted) for e in events) == 2
    assert sum(isinstance(e, UtteranceReady) for e in events) == 2


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="behaviour"):
        MisbehaveOptions(behaviour="shout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        MisbehaveOptions(behaviour="text", text_per_s=0)
    with pytest.raises(ValueError, match="resume_every"):
        MisbehaveOptions(behaviour="reconnect", resume_every=0)


def test_one_call_may_misbehave_in_several_ways_at_once() -> None:
    opts = MisbehaveOptions(behaviour="text", also=("noise", "reconnect"))
    assert opts.kinds == ("text", "noise", "reconnect")
    with pytest.raises(ValueError, match="named twice"):
        MisbehaveOptions(behaviour="text", also=("text",))
    with pytest.raises(ValueError, match="behaviour"):
        MisbehaveOptions(behaviour="text", also=("shout",))  # type: ignore[arg-type]
