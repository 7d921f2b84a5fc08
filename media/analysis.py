"""Analysis of received call media with arrival times (pure numpy, no transport).

The recording bot timestamps every frame it receives on one monotonic clock; these functions
turn those frames into the numbers a call is held to: reply onset, barge-in silence, mouth
motion, mouth/audio correlation and lip-sync skew. Times are seconds on the caller's clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Envelope",
    "MouthBox",
    "audio_envelope",
    "av_skew_ms",
    "first_mouth_moving_frame",
    "mouth_audio_correlation",
    "mouth_motion",
    "mouth_openness",
    "mouth_rois",
    "noise_floor",
    "reply_onset",
    "resample_series",
    "rois_motion",
    "silence_onset",
    "speech_threshold",
]

MouthBox = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` of the lips, normalized to 0..1 of the frame."""

_ABS_MIN_THRESHOLD = 0.003  # RMS of full-scale 1.0 audio, about -50 dBFS
_FLOOR_FACTOR = 4.0  # speech threshold: noise floor +12 dB


@dataclass(frozen=True, slots=True)
class Envelope:
    """RMS per window: ``t[i]`` is the start of window ``i``; ``rms`` of audio in -1..1."""

    t: np.ndarray
    rms: np.ndarray
    window_s: float

    def __post_init__(self) -> None:
        if self.t.shape != self.rms.shape or self.t.ndim != 1:
            raise ValueError("Envelope.t and Envelope.rms must be 1-D arrays of one length")
        if self.window_s <= 0:
            raise ValueError("Envelope.window_s must be positive")


def audio_envelope(
    chunks: Sequence[np.ndarray],
    arrival_t: Sequence[float],
    *,
    sample_rate: int,
    window_s: float = 0.04,
) -> Envelope:
    """RMS per ``window_s`` of mono audio chunks, each stamped with its arrival time.

    A chunk is taken to end at its arrival time, so sample ``i`` of an ``n``-sample chunk
    is at ``arrival - (n - i) / sample_rate``. Integer chunks are scaled to -1..1.
    Windows that received no samples (a gap) have RMS 0.
    """
    if len(chunks) != len(arrival_t):
        raise ValueError("audio_envelope: chunks and arrival_t differ in length")
    if sample_rate <= 0 or window_s <= 0:
        raise ValueError("audio_envelope: sample_rate and window_s must be positive")
    if not chunks:
        return Envelope(np.zeros(0), np.zeros(0), window_s)
    values: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for chunk, t_end in zip(chunks, arrival_t, strict=True):
        x = np.asarray(chunk)
        if x.ndim != 1:
            raise ValueError("audio_envelope: chunks must be 1-D (mono)")
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
        n = x.shape[0]
        values.append(x.astype(np.float64, copy=False))
        times.append(float(t_end) - (n - np.arange(n)) / sample_rate)
    v = np.concatenate(values)
    ts = np.concatenate(times)
    if v.size == 0:
        return Envelope(np.zeros(0), np.zeros(0), window_s)
    t0 = float(ts.min())
    idx = np.floor((ts - t0) / window_s).astype(np.int64)
    n_win = int(idx.max()) + 1
    energy = np.bincount(idx, weights=v * v, minlength=n_win)
    count = np.bincount(idx, minlength=n_win)
    rms = np.sqrt(np.divide(energy, count, out=np.zeros(n_win), where=count > 0))
    return Envelope(t0 + np.arange(n_win) * window_s, rms, window_s)


def noise_floor(env: Envelope, before_t: float, *, percentile: float = 20.0) -> float:
    """Low percentile of the envelope before ``before_t`` (of all of it if nothing is before)."""
    pre = env.rms[env.t < before_t]
    if pre.size == 0:
        pre = env.rms
    return float(np.percentile(pre, percentile)) if pre.size else 0.0


def speech_threshold(env: Envelope, before_t: float) -> float:
    """Speech threshold: 12 dB above the noise floor before ``before_t``, at least -50 dBFS."""
    return max(_ABS_MIN_THRESHOLD, _FLOOR_FACTOR * noise_floor(env, before_t))


def _first_run(mask: np.ndarray, start: int, run: int) -> int | None:
    """Index of the first ``run`` consecutive True values at or after ``start``."""
    m = mask[start:].astype(np.int64)
    if m.size < run:
        return None
    windows = np.convolve(m, np.ones(run, dtype=np.int64), mode="valid")
    hits = np.flatnonzero(windows == run)
    return int(hits[0]) + start if hits.size else None


def reply_onset(
    env: Envelope,
    after_t: float,
    *,
    min_duration_s: float = 0.06,
    threshold: float | None = None,
) -> float | None:
    """First time after ``after_t`` where the envelope stays above the speech threshold.

    The envelope must stay above it for ``min_duration_s``; the threshold defaults to
    :func:`speech_threshold` measured before ``after_t``. Returns the start of the first
    window of that run, or None if the audio never gets loud for long enough.
    """
    thr = speech_threshold(env, after_t) if threshold is None else threshold
    run = max(1, math.ceil(min_duration_s / env.window_s - 1e-9))
    start = int(np.searchsorted(env.t, after_t, side="left"))
    i = _first_run(env.rms > thr, start, run)
    return None if i is None else float(env.t[i])


def silence_onset(
    env: Envelope,
    after_t: float,
    *,
    threshold: float,
    min_duration_s: float = 0.2,
) -> float | None:
    """First time after ``after_t`` when the envelope stays below ``threshold`` for a while.

    ``min_duration_s`` of consecutive quiet windows are needed (default 200 ms); returns the
    start of the first quiet window, or None if the audio never goes quiet for long enough.
    """
    run = max(1, math.ceil(min_duration_s / env.window_s - 1e-9))
    start = int(np.searchsorted(env.t, after_t, side="left"))
    i = _first_run(env.rms < threshold, start, run)
    return None if i is None else float(env.t[i])


def _resize_area(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Area-average resize of a 2-D image (any size, up or down) with an integral image."""
    h, w = img.shape
    ii = np.zeros((h + 1, w + 1), dtype=np.float64)
    ii[1:, 1:] = img.astype(np.float64).cumsum(0).cumsum(1)
    ys = np.linspace(0, h, out_h + 1)
    xs = np.linspace(0, w, out_w + 1)
    y0 = np.minimum(np.floor(ys[:-1]).astype(int), h - 1)
    y1 = np.maximum(np.ceil(ys[1:]).astype(int), y0 + 1)
    x0 = np.minimum(np.floor(xs[:-1]).astype(int), w - 1)
    x1 = np.maximum(np.ceil(xs[1:]).astype(int), x0 + 1)
    s = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return s / area


def _crop_mouth(frame: np.ndarray, box: MouthBox, size: tuple[int, int]) -> np.ndarray:
    if frame.ndim == 3:
        frame = frame.mean(axis=2)
    if frame.ndim != 2:
        raise ValueError("mouth region: frames must be 2-D grey or 3-D colour arrays")
    h, w = frame.shape
    x0, y0, x1, y1 = box
    c0, c1 = math.floor(x0 * w), math.ceil(x1 * w)
    r0, r1 = math.floor(y0 * h), math.ceil(y1 * h)
    c0, r0 = max(0, min(c0, w - 1)), max(0, min(r0, h - 1))
    c1, r1 = max(c0 + 1, min(c1, w)), max(r0 + 1, min(r1, h))
    return _resize_area(frame[r0:r1, c0:c1], size[1], size[0])


def mouth_rois(
    frames: Sequence[np.ndarray],
    box: MouthBox,
    *,
    roi_size: tuple[int, int] = (48, 24),
) -> np.ndarray:
    """The mouth region of each frame, resized to ``roi_size`` (width, height): ``N×h×w``.

    Frames are grey ``H×W`` or colour ``H×W×C`` (0..255) of any size; the box is normalized,
    so frames of different sizes give comparable regions.
    """
    x0, y0, x1, y1 = box
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(f"mouth box {box!r} is not inside 0..1")
    out = np.zeros((len(frames), roi_size[1], roi_size[0]))
    for i, f in enumerate(frames):
        out[i] = _crop_mouth(np.asarray(f), box, roi_size)
    return out


def rois_motion(rois: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive mouth regions; element 0 is 0."""
    out = np.zeros(rois.shape[0])
    if rois.shape[0] > 1:
        out[1:] = np.abs(np.diff(rois, axis=0)).mean(axis=(1, 2))
    return out


def mouth_motion(
    frames: Sequence[np.ndarray],
    box: MouthBox,
    *,
    roi_size: tuple[int, int] = (48, 24),
) -> np.ndarray:
    """Mean absolute difference between consecutive frames inside the mouth box.

    See :func:`mouth_rois` for the region; element 0 is 0 (no previous frame).
    """
    return rois_motion(mouth_rois(frames, box, roi_size=roi_size))


def mouth_openness(rois: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """How far each mouth region is from the mouth at rest (mean absolute difference).

    The rest appearance is the per-pixel median of the regions selected by the boolean
    mask ``rest`` (frames where the avatar idles); with none selected, of all regions.
    An open mouth differs from a closed one whether it shows a dark cavity or teeth, so
    this follows the jaw opening for any renderer.
    """
    rest = np.asarray(rest, dtype=bool)
    if rest.shape != (rois.shape[0],):
        raise ValueError("mouth_openness: rest must be one boolean per region")
    if rois.shape[0] == 0:
        return np.zeros(0)
    ref = np.median(rois[rest] if rest.any() else rois, axis=0)
    return np.abs(rois - ref).mean(axis=(1, 2))


def resample_series(
    t: np.ndarray, values: np.ndarray, start: float, stop: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values(t)`` onto the grid ``start, start+step, … < stop``."""
    if t.size == 0:
        raise ValueError("resample_series: empty series")
    grid = start + np.arange(max(0, math.ceil((stop - start) / step - 1e-9))) * step
    return grid, np.interp(grid, t, values)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def mouth_audio_correlation(
    mouth_t: np.ndarray,
    mouth: np.ndarray,
    env: Envelope,
    start: float,
    stop: float,
    *,
    rate_hz: float = 25.0,
    smooth_s: float = 0.12,
    block_s: float = 0.5,
    shuffles: int = 20,
    seed: int = 0,
) -> tuple[float, float]:
    """Pearson correlation of a mouth series and the audio envelope on a ``rate_hz`` grid.

    ``mouth`` is :func:`mouth_openness` or :func:`mouth_motion` at times ``mouth_t``. Both
    series are smoothed by a moving average of ±``smooth_s`` (motion is a change between
    frames and peaks on the flanks of each syllable; smoothing compares activity with
    activity). Returns ``(matched, control)``: the control is the mean correlation
    against the same envelope cut into ``block_s`` blocks and shuffled (``shuffles`` times,
    seeded), which keeps its level statistics but breaks its timing.
    """
    if stop - start < 2.0 / rate_hz:
        raise ValueError("mouth_audio_correlation: interval shorter than two samples")
    step = 1.0 / rate_hz
    _, m = resample_series(mouth_t, mouth, start, stop, step)
    _, a = resample_series(env.t + env.window_s / 2, env.rms, start, stop, step)
    half = round(smooth_s * rate_hz)
    kernel = np.ones(2 * half + 1) / (2 * half + 1)

    def smooth(x: np.ndarray) -> np.ndarray:
        return np.convolve(x, kernel, mode="same") if half > 0 else x

    ms = smooth(m)
    matched = _pearson(ms, smooth(a))
    block = max(1, round(block_s * rate_hz))
    blocks = [a[i : i + block] for i in range(0, a.size, block)]
    rng = np.random.default_rng(seed)
    control = [
        _pearson(ms, smooth(np.concatenate([blocks[j] for j in rng.permutation(len(blocks))])))
        for _ in range(shuffles)
    ]
    return matched, float(np.mean(control)) if control else 0.0


def av_skew_ms(
    mouth_t: np.ndarray,
    mouth: np.ndarray,
    env: Envelope,
    start: float,
    stop: float,
    *,
    kind: str = "openness",
    max_lag_ms: float = 400.0,
    step_ms: float = 10.0,
) -> float | None:
    """Lag of the mouth behind the audio (ms, positive = video late), within ±max_lag_ms.

    ``kind="openness"`` (:func:`mouth_openness`) is compared with the envelope itself;
    ``kind="motion"`` (a frame-to-frame change) with the envelope's change over one frame
    interval (``|env(t) - env(t - dt)|``). Both go onto a ``step_ms`` grid over
    ``start..stop``; the lag maximizing their normalized cross-correlation is returned,
    refined by a parabola through the peak. None if either series is flat or too short.
    """
    if kind not in ("openness", "motion"):
        raise ValueError(f"av_skew_ms: kind must be 'openness' or 'motion', not {kind!r}")
    step = step_ms / 1000.0
    max_lag = round(max_lag_ms / step_ms)
    grid = start + np.arange(max(0, math.ceil((stop - start) / step))) * step
    if grid.size < 4 * max_lag + 4:
        return None
    frame_dt = float(np.median(np.diff(mouth_t))) if mouth_t.size > 1 else 0.04
    centre = env.t + env.window_s / 2
    a = np.interp(grid, centre, env.rms)
    if kind == "motion":
        a = np.abs(a - np.interp(grid - frame_dt, centre, env.rms))
    m = np.interp(grid, mouth_t, mouth)
    if a.std() == 0 or m.std() == 0:
        return None
    a = (a - a.mean()) / a.std()
    m = (m - m.mean()) / m.std()
    lags = np.arange(-max_lag, max_lag + 1)
    scores = np.empty(lags.size)
    for k, lag in enumerate(lags):
        # video late by `lag` steps: m[i] matches a[i - lag]
        if lag >= 0:
            x, y = m[lag:], a[: a.size - lag]
        else:
            x, y = m[: m.size + lag], a[-lag:]
        scores[k] = float(np.dot(x, y)) / x.size
    k = int(np.argmax(scores))
    frac = 0.0
    if 0 < k < scores.size - 1:
        den = scores[k - 1] - 2 * scores[k] + scores[k + 1]
        if den < 0:
            frac = 0.5 * (scores[k - 1] - scores[k + 1]) / den
    return float((lags[k] + frac) * step_ms)


def first_mouth_moving_frame(
    motion_t: np.ndarray,
    motion: np.ndarray,
    after_t: float,
    *,
    baseline_from: float | None = None,
    baseline_s: float = 1.5,
    margin: float = 1.5,
    min_frames: int = 2,
) -> float | None:
    """Arrival time of the first frame after ``after_t`` whose mouth moves clearly.

    The idle baseline is the motion of the frames from ``baseline_from`` (default
    ``after_t - baseline_s``) to ``after_t``; a frame moves clearly when its motion exceeds
    the baseline's 75th percentile by ``margin`` grey levels plus four robust deviations
    (1.4826 × MAD), for ``min_frames`` frames in a row.
    """
    lo = (
        after_t - baseline_s if baseline_from is None or baseline_from >= after_t else baseline_from
    )
    pre = motion[(motion_t < after_t) & (motion_t >= lo)]
    if pre.size:
        med = float(np.median(pre))
        mad = 1.4826 * float(np.median(np.abs(pre - med)))
        thr = float(np.percentile(pre, 75)) + margin + 4.0 * mad
    else:
        thr = margin
    start = int(np.searchsorted(motion_t, after_t, side="left"))
    i = _first_run(motion > thr, start, max(1, min_frames))
    return None if i is None else float(motion_t[i])
