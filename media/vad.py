"""Speech segmentation of the caller's microphone on webrtcvad: a pure state machine.

Feed it 20 ms frames (320 int16 samples at 16 kHz) with the clock time at which each frame
*ends*; it returns typed events:

- :class:`SpeechStarted` — speech began (the barge-in trigger). Emitted once per utterance,
  when ``start_ratio`` of the last ``start_window_ms`` of frames are voiced.
- :class:`UtteranceReady` — a segment of speech for ASR: ``pre_roll_ms`` of audio before the
  start window, the speech, and up to ``pre_roll_ms`` of the trailing silence.
  ``complete=False`` marks a forced split of speech longer than ``max_segment_s`` (cut at the
  quietest 20 ms frame of the last ``split_search_s``); more of the same speech follows.
- :class:`SpeechDropped` — speech ended after less than ``min_utterance_s`` of voiced audio
  (a cough, a click); nothing goes to ASR.

Speech ends after ``end_silence_ms`` of consecutive unvoiced frames (the hangover).

For what listens to the speech in progress (early ASR, an adaptive end of turn), the
segmenter also tells where the voice stopped sooner than webrtcvad does: its own hangover
keeps frames voiced for ~100-200 ms after clean speech falls silent, so with ``quiet_db`` set
a frame counts as silent there when it is unvoiced *or* quiet: ``quiet_db`` under the
loudest frame of the speech so far (:attr:`Segmenter.trailing_silence_frames`). On a noisy
line nothing is that quiet and the VAD decides alone. Off by default (docs/asr.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

__all__ = [
    "VAD_FRAME_SAMPLES",
    "VAD_SAMPLE_RATE",
    "Segmenter",
    "SegmenterEvent",
    "SegmenterOptions",
    "SpeechDropped",
    "SpeechStarted",
    "UtteranceReady",
]

VAD_SAMPLE_RATE = 16000
VAD_FRAME_SAMPLES = 320
_FRAME_S = VAD_FRAME_SAMPLES / VAD_SAMPLE_RATE


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmenterOptions:
    """Tuning of :class:`Segmenter`; durations are rounded to whole 20 ms frames."""

    aggressiveness: int = 2
    start_window_ms: int = 200
    start_ratio: float = 0.6
    end_silence_ms: int = 500
    pre_roll_ms: int = 200
    min_utterance_s: float = 0.5
    max_segment_s: float = 8.0
    split_search_s: float = 3.0
    quiet_db: float = 0.0  # a frame this far under the loudest is quiet; 0: the VAD alone

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.start_window_ms < 20:
            raise ValueError(f"start_window_ms must be >= 20, got {self.start_window_ms}")
        if not 0.0 < self.start_ratio <= 1.0:
            raise ValueError(f"start_ratio must be in (0, 1], got {self.start_ratio}")
        if self.end_silence_ms < 20:
            raise ValueError(f"end_silence_ms must be >= 20, got {self.end_silence_ms}")
        if self.pre_roll_ms < 0:
            raise ValueError(f"pre_roll_ms must be >= 0, got {self.pre_roll_ms}")
        if self.min_utterance_s < 0:
            raise ValueError(f"min_utterance_s must be >= 0, got {self.min_utterance_s}")
        if self.max_segment_s < 1.0:
            raise ValueError(f"max_segment_s must be >= 1.0, got {self.max_segment_s}")
        if self.quiet_db and not 6.0 <= self.quiet_db <= 90.0:
            raise ValueError(f"quiet_db must be 0 (off) or within 6..90, got {self.quiet_db}")
        if not 0.1 <= self.split_search_s <= self.max_segment_s:
            raise ValueError(
                f"split_search_s must be within [0.1, max_segment_s], got {self.split_search_s}"
            )


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech detected at clock time ``t``; ``start_s`` is when the start window began."""

    t: float
    start_s: float


@dataclass(frozen=True, slots=True)
class UtteranceReady:
    """16 kHz mono int16 speech from clock time ``start_s`` to ``end_s``.

    ``complete`` is False for a forced split of long speech (more follows).
    """

    samples: np.ndarray
    start_s: float
    end_s: float
    complete: bool = True

    @property
    def duration_s(self) -> float:
        return len(self.samples) / VAD_SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class SpeechDropped:
    """Speech that ended at clock time ``t`` with only ``voiced_s`` of voice: too short."""

    t: float
    voiced_s: float


SegmenterEvent = SpeechStarted | UtteranceReady | SpeechDropped


def _power(frame: np.ndarray) -> float:
    """Mean square of a frame."""
    x = frame.astype(np.float32)
    return float(np.dot(x, x)) / max(1, x.size)


def _frames(ms: float) -> int:
    return max(0, round(ms / 1000 / _FRAME_S))


class Segmenter:
    """webrtcvad speech segmenter for one call; see the module docstring for the events."""

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._vad = webrtcvad.Vad(self.options.aggressiveness)
        o = self.options
        self._window_n = _frames(o.start_window_ms)
        self._pre_n = _frames(o.pre_roll_ms)
        self._end_n = _frames(o.end_silence_ms)
        self._max_n = _frames(o.max_segment_s * 1000)
        self._search_n = _frames(o.split_search_s * 1000)
        self._quiet_ratio = 10.0 ** (-o.quiet_db / 10.0) if o.quiet_db else -1.0  # power
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to listening for a new start (barge-in, new turn)."""
        # (frame, voiced, end_time) of the recent frames while idle
        self._recent: deque[tuple[np.ndarray, bool, float]] = deque(
            maxlen=self._pre_n + self._window_n
        )
        self._speaking = False
        self._seg: list[np.ndarray] = []  # frames of the current segment
        self._seg_start = 0.0  # clock time the segment's first frame starts
        self._trailing = 0  # consecutive unvoiced frames at the end
        self._voiced = 0  # voiced frames in the whole utterance (all splits)
        self._loudest = 0.0  # mean square of the loudest frame of the utterance
        self._hushed = 0  # consecutive unvoiced or quiet frames at the end
        self._sounded = 0  # voiced frames that were not quiet

    @property
    def speaking(self) -> bool:
        """True between SpeechStarted and the end of that speech."""
        return self._speaking

    @property
    def trailing_silence_frames(self) -> int:
        """Silent 20 ms frames at the end of the speech in progress, unvoiced or quiet (see
        the module docstring; 0 when not speaking). At least the unvoiced frames that end
        the speech after ``end_silence_ms``."""
        return max(self._trailing, self._hushed) if self._speaking else 0

    @property
    def voiced_frames(self) -> int:
        """Voiced frames of the speech in progress that were not quiet, so far (0 when not
        speaking): it grows whenever the voice comes back after silent frames."""
        return self._sounded if self._speaking else 0

    def current_speech(self) -> np.ndarray | None:
        """The audio of the speech in progress so far (a copy), None when not speaking."""
        if not self._speaking or not self._seg:
            return None
        return np.concatenate(self._seg)

    def push(self, frame: np.ndarray, now: float) -> list[SegmenterEvent]:
        """Feed one 20 ms frame that ends at clock time ``now``; returns the events."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise ValueError("frame must be a 1-D int16 numpy array")
        if len(frame) != VAD_FRAME_SAMPLES:
            raise ValueError(
                f"frame must be {VAD_FRAME_SAMPLES} samples (20 ms at 16 kHz), got {len(frame)}"
            )
        voiced = self._vad.is_speech(frame.tobytes(), VAD_SAMPLE_RATE)
        if not self._speaking:
            return self._step_idle(frame, voiced, now)
        self._listen_level(frame, voiced)
        return self._step_speaking(frame, voiced, now)

    def _listen_level(self, frame: np.ndarray, voiced: bool) -> None:
        """Track the quiet-or-unvoiced tail of the speech in progress."""
        power = _power(frame)
        self._loudest = max(self._loudest, power)
        if voiced and power > self._loudest * self._quiet_ratio:
            self._sounded += 1
            self._hushed = 0
        else:
            self._hushed += 1

    def end_now(self, now: float) -> list[SegmenterEvent]:
        """End the speech in progress at once, as ``end_silence_ms`` of silence would (an
        end of turn decided upstream: a finished sentence); nothing when not speaking."""
        return [self._end(now)] if self._speaking else []

    def _step_idle(self, frame: np.ndarray, voiced: bool, now: float) -> list[SegmenterEvent]:
        self._recent.append((frame, voiced, now))
        window = list(self._recent)[-self._window_n :]
        if len(window) < self._window_n:
            return []
        n_voiced = sum(v for _, v, _ in window)
        if n_voiced < self.options.start_ratio * self._window_n:
            return []
        self._speaking = True
        self._seg = [f for f, _, _ in self._recent]
        self._seg_start = self._recent[0][2] - _FRAME_S
        self._trailing = 0
        for _, v, _ in reversed(window):
            if v:
                break
            self._trailing += 1
        self._voiced = n_voiced
        self._loudest = max(_power(f) for f, _, _ in self._recent)
        self._sounded = n_voiced
        self._hushed = self._trailing
        window_start = window[0][2] - _FRAME_S
        self._recent.clear()
        return [SpeechStarted(t=now, start_s=window_start)]

    def _step_speaking(self, frame: np.ndarray, voiced: bool, now: float) -> list[SegmenterEvent]:
        self._seg.append(frame)
        if voiced:
            self._voiced += 1
            self._trailing = 0
        else:
            self._trailing += 1
        if self._trailing >= self._end_n:
            return [self._end(now)]
        if len(self._seg) >= self._max_n:
            return [self._split()]
        return []

    def _end(self, now: float) -> SegmenterEvent:
        voiced_s = self._voiced * _FRAME_S
        trim = max(0, self._trailing - self._pre_n)
        frames = self._seg[: len(self._seg) - trim]
        start = self._seg_start
        self._speaking = False
        self._seg = []
        self._trailing = 0
        self._voiced = 0
        self._loudest = 0.0
        self._hushed = 0
        self._sounded = 0
        if voiced_s < self.options.min_utterance_s:
            return SpeechDropped(t=now, voiced_s=voiced_s)
        return UtteranceReady(
            samples=np.concatenate(frames),
            start_s=start,
            end_s=start + len(frames) * _FRAME_S,
            complete=True,
        )

    def _split(self) -> UtteranceReady:
        n = len(self._seg)
        lo = max(1, n - self._search_n)
        energy = [float(np.mean(self._seg[i].astype(np.float32) ** 2)) for i in range(lo, n)]
        cut = lo + int(np.argmin(energy)) + 1  # the quietest frame ends the first part
        head, self._seg = self._seg[:cut], self._seg[cut:]
        start = self._seg_start
        self._seg_start = start + cut * _FRAME_S
        return UtteranceReady(
            samples=np.concatenate(head),
            start_s=start,
            end_s=self._seg_start,
            complete=False,
        )
