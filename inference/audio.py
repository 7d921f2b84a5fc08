"""Small PCM helpers shared by the stages (transport-free)."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly

__all__ = ["fit_length", "pad_to_multiple", "resample_int16"]


def resample_int16(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono int16 PCM with a polyphase filter; returns int16."""
    if samples.ndim != 1:
        raise ValueError("expected mono (1-D) PCM")
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError("sample rates must be positive")
    if rate_in == rate_out or len(samples) == 0:
        return samples.astype(np.int16, copy=True)
    g = gcd(rate_in, rate_out)
    out = resample_poly(samples.astype(np.float32), rate_out // g, rate_in // g)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def pad_to_multiple(samples: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad at the end so the length is a multiple of ``multiple``."""
    rest = (-len(samples)) % multiple
    if rest == 0:
        return samples
    return np.concatenate([samples, np.zeros(rest, dtype=samples.dtype)])


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples, zero-padded at the end when there are fewer."""
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), dtype=samples.dtype)])
