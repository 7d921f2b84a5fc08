"""What the ``avatarsrc`` element plays, as small typed interfaces.

The element is GStreamer plumbing only: it reads an :class:`AvSource` (one A/V timeline on
one clock, living on an asyncio loop) and turns it into buffers. What fills the timeline
(the speech stages, the renderer, the control channel) is built by a :class:`SourceFactory`
that the composition root injects: ``signaling.stream`` for ``avatar-rtc stream`` and for
the plugin file that ``gst-launch-1.0`` loads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from media.clock import MediaClock

__all__ = [
    "FPS_CHOICES",
    "SAMPLE_RATE",
    "AvSource",
    "OutputTime",
    "SourceError",
    "SourceFactory",
    "SourceRequest",
]

SAMPLE_RATE = 48000  # the timeline's audio rate (AvPlayer's), mono S16LE
# frame rates whose frames hold a whole number of 48 kHz samples (AvPlayer needs it)
FPS_CHOICES = tuple(f for f in range(5, 61) if SAMPLE_RATE % f == 0)


class SourceError(RuntimeError):
    """The source cannot start: a missing avatar, renderer or configuration."""


class AvSource(Protocol):
    """One A/V timeline: the voice and the face at any clock time, idle when silent."""

    @property
    def fps(self) -> int: ...

    @property
    def clock(self) -> MediaClock: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the timeline lives on; read it only from there."""
        ...

    def audio_at(self, t: float, n: int) -> np.ndarray:
        """``n`` mono int16 samples at ``SAMPLE_RATE`` from clock time ``t``."""
        ...

    def frame_at(self, t: float) -> np.ndarray:
        """The RGB frame shown at clock time ``t`` (the idle loop when nothing is said)."""
        ...

    def resume(self) -> None:
        """An output is live: the clock runs."""
        ...

    def pause(self) -> None:
        """No output is live: the clock stops, so nothing scheduled is played to no one."""
        ...

    def close(self) -> None:
        """Stop everything the source started (only when the element created it)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRequest:
    """What the element asks a factory for: its properties and the negotiated caps."""

    avatar: str
    renderer: str = ""  # "" = the configuration's
    config: str = ""  # YAML configuration file, "" = defaults and environment
    control: str = ""  # control channel address ("127.0.0.1:7070", "unix:/path"), "" none
    dialogue: bool = False  # questions get answers from the dialogue stage
    fps: int = 25
    height: int = 512


class SourceFactory(Protocol):
    def __call__(self, request: SourceRequest) -> AvSource: ...


class OutputTime:
    """A monotonic time that runs only while an output is live (``resume``/``pause``).

    Give it to a :class:`~media.clock.MediaClock` as ``time_fn``: while the ingest is down
    the timeline stands still, so the avatar continues from the same word when it returns.
    """

    def __init__(self, time_fn: Callable[[], float] = time.monotonic) -> None:
        self._time_fn = time_fn
        self._lock = threading.Lock()
        self._offset = 0.0  # paused time so far
        self._paused_at: float | None = time_fn()  # starts paused

    def __call__(self) -> float:
        with self._lock:
            at = self._paused_at if self._paused_at is not None else self._time_fn()
            return at - self._offset

    @property
    def running(self) -> bool:
        return self._paused_at is None

    def pause(self) -> None:
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._time_fn()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self._offset += self._time_fn() - self._paused_at
                self._paused_at = None
