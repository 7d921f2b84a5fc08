"""A fake TTS for fast tests of the rest of the pipeline.

It produces deterministic speech-like PCM: a gliding voiced tone with harmonics and a little
noise, shaped by a syllable-rate (≈4 Hz) envelope, for a duration proportional to the text
(Chinese characters count as syllables). The same text always gives the same samples.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.dialogue.sentences import split_sentences
from inference.dialogue.text import contains_cjk
from inference.registry import Backend, BackendSettings
from inference.tts.base import Tts
from inference.types import PcmChunk

__all__ = ["BACKEND", "FakeTts", "FakeTtsOptions", "FakeTtsSettings", "fake_speech"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeTtsOptions:
    """``seconds_per_char`` of Latin text (a CJK character counts ``cjk_char_weight``
    chars); ``realtime_factor``: synthesis time simulated per second of audio (0 = instant);
    ``min_sentence_s``: the shortest sentence."""

    sample_rate: int = 16000
    seconds_per_char: float = 0.065
    cjk_char_weight: float = 3.0
    min_sentence_s: float = 0.3
    realtime_factor: float = 0.0
    amplitude: float = 0.3

    def __post_init__(self) -> None:
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000, got {self.sample_rate}")
        if self.seconds_per_char <= 0 or self.min_sentence_s <= 0 or self.cjk_char_weight <= 0:
            raise ValueError("seconds_per_char, cjk_char_weight and min_sentence_s must be > 0")
        if self.realtime_factor < 0:
            raise ValueError(f"realtime_factor must be >= 0, got {self.realtime_factor}")
        if not 0 < self.amplitude <= 1:
            raise ValueError(f"amplitude must be in (0, 1], got {self.amplitude}")


def _duration_s(text: str, opts: FakeTtsOptions) -> float:
    weight = sum(opts.cjk_char_weight if contains_cjk(c) else 1.0 for c in text if not c.isspace())
    return max(opts.min_sentence_s, weight * opts.seconds_per_char)


def fake_speech(text: str, opts: FakeTtsOptions) -> np.ndarray:
    """The deterministic int16 samples the fake says for one sentence."""
    rate = opts.sample_rate
    n = round(_duration_s(text, opts) * rate)
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    t = np.arange(n, dtype=np.float64) / rate
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    noise = rng.standard_normal(n) * 0.15
    syllables = 0.5 - 0.5 * np.cos(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))
    edge = np.minimum(1.0, np.minimum(t, t[::-1] if n else t) / 0.03)  # 30 ms fades
    signal = (voiced + noise) / 1.9 * syllables * edge * opts.amplitude
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


class FakeTts:
    """The fake :class:`~inference.tts.base.Tts`: one chunk per sentence, last ``final``."""

    def __init__(self, options: FakeTtsOptions | None = None) -> None:
        self._options = options or FakeTtsOptions()
        self.said: list[tuple[str, str]] = []

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        opts = self._options
        self.said.append((text, language))
        sentences = split_sentences(text)
        if not sentences:
            yield PcmChunk(np.zeros(0, dtype=np.int16), opts.sample_rate, final=True)
            return
        for n, sentence in enumerate(sentences):
            samples = fake_speech(sentence, opts)
            await asyncio.sleep(opts.realtime_factor * len(samples) / opts.sample_rate)
            yield PcmChunk(samples, opts.sample_rate, final=n == len(sentences) - 1)


class FakeTtsSettings(BackendSettings):
    """``tts: {backend: fake}``: instant synthetic speech."""

    backend: Literal["fake"] = "fake"

    def options(self) -> FakeTtsOptions:
        return FakeTtsOptions()


BACKEND: Backend[Tts] = Backend(
    name="fake", options=FakeTtsOptions, make=FakeTts, settings=FakeTtsSettings
)
