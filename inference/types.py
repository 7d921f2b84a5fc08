"""Typed values that flow between the stages of a call.

Everything here is transport-free: numpy arrays and plain dataclasses. Audio is always
mono int16 PCM with an explicit sample rate; video frames are RGB uint8 arrays (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "SPEECH_RATE",
    "Intent",
    "PcmChunk",
    "ReplySentence",
    "Transcript",
    "Utterance",
    "VideoFrameBatch",
]

SPEECH_RATE = 16000  # Hz: the caller's speech as the ASR gets it (``Utterance``)

# What a reply asks of the call besides being spoken: "handoff" = put the caller through to a
# person (docs/protocol.md, the handoff event).
Intent = Literal["handoff"]


@dataclass(frozen=True, slots=True)
class PcmChunk:
    """Mono int16 PCM at ``sample_rate``. ``final`` marks the last chunk of a segment."""

    samples: np.ndarray
    sample_rate: int
    final: bool = False

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("PcmChunk.samples must be a 1-D int16 array")
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Utterance:
    """One segment of the caller's speech, 16 kHz mono int16, with clock times in seconds.

    ``language``: the language the call expects ("en", "zh"; the page's choice or the last
    turn's), a hint for recognition that the audio may overrule; None: no expectation.
    """

    samples: np.ndarray
    start_s: float
    end_s: float
    sample_rate: int = SPEECH_RATE
    language: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str = "en"  # "en" or "zh"
    confidence: float = 1.0


@dataclass(frozen=True, slots=True)
class ReplySentence:
    text: str
    language: str = "en"
    index: int = 0
    intent: Intent | None = None
    source: str | None = None  # the document the answer was taken from (captions, not voice)


@dataclass(frozen=True, slots=True)
class VideoFrameBatch:
    """Consecutive rendered frames at ``fps``; frame i covers audio [i/fps, (i+1)/fps)."""

    frames: list[np.ndarray] = field(default_factory=list)
    fps: int = 25
