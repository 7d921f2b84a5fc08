"""Mouth shapes from speech audio: openness from energy, width/rounding from spectral shape.

Pure functions of the samples (no state, no clock): frame i of ``fps`` covers the audio
[i / fps, (i + 1) / fps), so the result lines up with the frames a renderer produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .base import RENDER_RATE, frame_count

__all__ = ["MouthShapes", "MouthTrackOptions", "Viseme", "mouth_curve", "mouth_shapes"]

SAMPLE_RATE = RENDER_RATE  # the renderer's input
_WINDOW = 1024  # analysis window (64 ms), centred on each frame's interval


class Viseme(IntEnum):
    """The few mouth-shape classes the warp renderer distinguishes."""

    REST = 0  # silence, closed lips (and m/b/p)
    AA = 1  # open vowels: a, ɑ, ʌ — most open, neutral width
    EE = 2  # front vowels: i, e — spread, half open
    OO = 3  # rounded vowels: u, o, w — narrow, rounded
    SS = 4  # fricatives: s, z, f, sh — nearly closed, spread, teeth


# (openness gain, width) per viseme; width > 0 spreads the corners, < 0 rounds the lips.
_PROTOTYPES: dict[Viseme, tuple[float, float]] = {
    Viseme.REST: (0.0, 0.0),
    Viseme.AA: (1.0, 0.05),
    Viseme.EE: (0.6, 0.8),
    Viseme.OO: (0.7, -1.0),
    Viseme.SS: (0.3, 0.5),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MouthTrackOptions:
    """Tuning of the audio → mouth mapping (levels in dBFS, times in milliseconds)."""

    gate_db: float = -50.0  # quieter than this is silence
    range_db: float = 30.0  # openness goes 0 → 1 over this many dB below the loud reference
    curve: float = 1.6  # > 1 keeps quiet sounds nearly closed
    attack_ms: float = 25.0  # time constant while opening
    release_ms: float = 50.0  # time constant while closing
    width_ms: float = 60.0  # time constant of width changes

    def __post_init__(self) -> None:
        if not -100.0 < self.gate_db < 0.0:
            raise ValueError("gate_db must be within (-100, 0)")
        if self.range_db <= 0 or self.curve <= 0:
            raise ValueError("range_db and curve must be positive")
        if min(self.attack_ms, self.release_ms, self.width_ms) < 0:
            raise ValueError("time constants must be >= 0")


@dataclass(frozen=True, slots=True)
class MouthShapes:
    """Per-frame mouth parameters: ``openness`` in [0, 1], ``width`` in [-1, 1], viseme class."""

    openness: np.ndarray  # (n,) float32
    width: np.ndarray  # (n,) float32, > 0 spread, < 0 rounded
    visemes: np.ndarray  # (n,) int8 Viseme values before smoothing
    level_db: np.ndarray  # (n,) float32 RMS level of each frame's interval in dBFS

    def __len__(self) -> int:
        return len(self.openness)


def mouth_curve(audio_16k: np.ndarray, fps: int) -> np.ndarray:
    """Per-frame mouth openness in [0, 1] for 16 kHz mono audio (int16 or float in [-1, 1])."""
    return mouth_shapes(audio_16k, fps).openness


def mouth_shapes(
    audio_16k: np.ndarray, fps: int, *, options: MouthTrackOptions | None = None
) -> MouthShapes:
    """Openness, width and viseme per video frame of ``fps`` for 16 kHz mono audio."""
    opts = options or MouthTrackOptions()
    if fps <= 0:
        raise ValueError("fps must be positive")
    audio = _as_float(audio_16k)
    n = frame_count(len(audio), fps)
    if n == 0:
        empty = np.zeros(0, np.float32)
        return MouthShapes(empty, empty, np.zeros(0, np.int8), empty)
    bounds = (np.arange(n + 1) * SAMPLE_RATE) // fps
    padded = np.concatenate([audio, np.zeros(int(bounds[-1]) - len(audio) + 1, np.float32)])
    squares = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    counts = np.maximum(np.diff(bounds), 1)
    rms = np.sqrt((squares[bounds[1:]] - squares[bounds[:-1]]) / counts)
    level = 20.0 * np.log10(rms + 1e-9)
    voiced = level > opts.gate_db
    if voiced.any():
        reference = max(float(np.percentile(level[voiced], 90)), opts.gate_db + opts.range_db / 2)
    else:
        reference = 0.0
    raw = np.clip((level - (reference - opts.range_db)) / opts.range_db, 0.0, 1.0) ** opts.curve
    raw[~voiced] = 0.0
    visemes = _classify(padded, bounds, voiced)
    gains = np.array([_PROTOTYPES[Viseme(v)][0] for v in range(len(Viseme))], np.float64)
    widths = np.array([_PROTOTYPES[Viseme(v)][1] for v in range(len(Viseme))], np.float64)
    target_open = raw * gains[visemes]
    target_width = widths[visemes] * np.minimum(1.0, 3.0 * raw)
    frame_ms = 1000.0 / fps
    openness = _attack_release(target_open, frame_ms, opts.attack_ms, opts.release_ms)
    width = _attack_release(target_width, frame_ms, opts.width_ms, opts.width_ms)
    openness[openness < 0.005] = 0.0  # the tail of a release: closed
    width[np.abs(width) < 0.005] = 0.0
    return MouthShapes(
        openness=np.clip(openness, 0.0, 1.0).astype(np.float32),
        width=np.clip(width, -1.0, 1.0).astype(np.float32),
        visemes=visemes.astype(np.int8),
        level_db=level.astype(np.float32),
    )


def _as_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError("audio must be mono (1-D)")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32)
    raise ValueError(f"audio must be int16 or float, not {audio.dtype}")


def _classify(audio: np.ndarray, bounds: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Viseme per frame from the spectrum of a 64 ms window centred on the frame."""
    n = len(bounds) - 1
    centres = (bounds[:-1] + bounds[1:]) // 2
    half = _WINDOW // 2
    padded = np.concatenate([np.zeros(half, np.float32), audio, np.zeros(half, np.float32)])
    idx = centres[:, None] + np.arange(_WINDOW)[None, :]
    windows = padded[idx] * np.hanning(_WINDOW).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    freqs = np.fft.rfftfreq(_WINDOW, 1.0 / SAMPLE_RATE)
    total = power[:, freqs >= 80].sum(axis=1) + 1e-12
    high = power[:, freqs >= 3500].sum(axis=1) / total
    # Centroids of the first- and second-formant regions: they barely depend on the pitch.
    f1 = _centroid(power, freqs, 300, 1000)
    f2 = _centroid(power, freqs, 1000, 3000)
    out = np.full(n, Viseme.AA, np.int8)  # open or neutral vowels
    out[(f2 > 1900) & (f1 < 520)] = Viseme.EE  # high F2, low F1: i, e, eɪ
    low = _centroid(power, freqs, 300, 3000)
    out[(low < 700) & (f2 < 1500)] = Viseme.OO  # energy low down, weak F2: u, o, w
    out[high > 0.4] = Viseme.SS  # energy above 3.5 kHz: s, z, f, sh
    out[~voiced] = Viseme.REST
    return out


def _centroid(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    band = (freqs >= lo) & (freqs < hi)
    p = power[:, band]
    return (p * freqs[band]).sum(axis=1) / (p.sum(axis=1) + 1e-12)


def _attack_release(target: np.ndarray, frame_ms: float, attack_ms: float, release_ms: float):
    """One-pole smoothing with separate rise (attack) and fall (release) time constants."""
    up = 1.0 - np.exp(-frame_ms / attack_ms) if attack_ms > 0 else 1.0
    down = 1.0 - np.exp(-frame_ms / release_ms) if release_ms > 0 else 1.0
    out = np.empty(len(target), np.float64)
    state = 0.0
    for i, value in enumerate(target):
        state += (up if value > state else down) * (value - state)
        out[i] = state
    return out
