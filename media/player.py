"""The single audio/video timeline of a call.

:class:`AvPlayer` holds the scheduled reply segments (audio + the face frames rendered for
it). The outgoing audio track and the outgoing video track both read it at their own clock
times, so voice and lips match by construction: a segment's audio sample ``i`` and its video
frame ``i * fps // sample_rate`` are scheduled at the same clock time.

Times are kept as integer sample positions on the call's timeline
(``position = round(clock_time * sample_rate)``), so back-to-back segments are exactly
gapless and never drift.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from media.clock import MediaClock

__all__ = ["AvPlayer", "IdleLoop"]

# A continuation is scheduled gaplessly only if it can still start this far ahead of now;
# the audio track has already fetched the 20 ms frame in flight.
_GUARD_S = 0.04
# Segments are forgotten this long after they ended (video may look up slightly older times).
_KEEP_S = 0.5


@dataclass(slots=True)
class _Segment:
    start: int  # first sample position
    audio: np.ndarray  # int16, mono
    frames: list[np.ndarray]

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


class AvPlayer:
    """The shared A/V timeline of one call.

    ``lead_s`` is how far ahead of now a segment starts when nothing is playing (room for
    the tracks' next fetch and for the next batch of frames to be rendered); ``ready_lead_s``
    replaces it in :meth:`push_ready`, for media whose continuation is already in hand (only
    the tracks' next fetch to clear). ``video_offset_s`` is a fixed A/V offset: video frames are
    looked up at ``t - video_offset_s``. A positive value shows each frame later (use it when
    the client's video path is known to be faster than its audio path by that much, e.g. an
    audio jitter buffer that holds ~80 ms more); a negative value shows frames earlier.
    """

    def __init__(
        self,
        *,
        clock: MediaClock,
        fps: int = 25,
        sample_rate: int = 48000,
        lead_s: float = 0.12,
        ready_lead_s: float = _GUARD_S,
        video_offset_s: float = 0.0,
    ) -> None:
        if fps <= 0 or sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {fps}, {sample_rate}")
        if lead_s < 0:
            raise ValueError(f"lead_s must be >= 0, got {lead_s}")
        if not _GUARD_S <= ready_lead_s:
            raise ValueError(f"ready_lead_s must be >= {_GUARD_S}, got {ready_lead_s}")
        if abs(video_offset_s) > 1.0:
            raise ValueError(f"video_offset_s must be within ±1 s, got {video_offset_s}")
        self.clock = clock
        self.fps = fps
        self.sample_rate = sample_rate
        self.lead_s = lead_s
        self.ready_lead_s = ready_lead_s
        self.video_offset_s = video_offset_s
        self._segments: deque[_Segment] = deque()
        self._end = 0  # end position of the last scheduled segment

    # -- scheduling -------------------------------------------------------------------

    def samples_for_frames(self, n_frames: int) -> int:
        """Audio samples that ``n_frames`` video frames cover (must be a whole number)."""
        total = n_frames * self.sample_rate
        if total % self.fps:
            raise ValueError(
                f"{n_frames} frames at {self.fps} fps are not a whole number of samples "
                f"at {self.sample_rate} Hz"
            )
        return total // self.fps

    def push(self, audio: np.ndarray, frames: Sequence[np.ndarray]) -> float:
        """Schedule a segment: mono int16 ``audio`` and the ``frames`` rendered for it.

        ``len(audio)`` must be exactly ``len(frames) * sample_rate / fps``. The segment starts
        right after the previous one if that one is still playing (gapless), else at
        ``clock.now() + lead_s`` rounded up to the video frame grid. Returns its start time
        (clock seconds).
        """
        return self._push(audio, frames, self.lead_s)

    def push_ready(self, audio: np.ndarray, frames: Sequence[np.ndarray]) -> float:
        """As :meth:`push`, starting ``ready_lead_s`` ahead of now when nothing plays: for a
        segment long enough that what follows it is sure to come in time."""
        return self._push(audio, frames, min(self.lead_s, self.ready_lead_s))

    def _push(self, audio: np.ndarray, frames: Sequence[np.ndarray], lead_s: float) -> float:
        if not isinstance(audio, np.ndarray) or audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError("audio must be a 1-D int16 numpy array")
        if len(frames) == 0:
            raise ValueError("push needs at least one video frame")
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3:
                raise ValueError(f"frame {i} must be an (H, W, 3) uint8 array")
            if f.shape[2] != 3:
                raise ValueError(f"frame {i} must have 3 channels (RGB), got {f.shape}")
        expected = self.samples_for_frames(len(frames))
        if len(audio) != expected:
            raise ValueError(
                f"audio has {len(audio)} samples but {len(frames)} frames at {self.fps} fps "
                f"need exactly {expected} at {self.sample_rate} Hz"
            )
        start = self._next_start_pos(lead_s)
        self._segments.append(_Segment(start, audio.copy(), list(frames)))
        self._end = start + len(audio)
        return start / self.sample_rate

    def next_start(self) -> float:
        """Clock time at which a segment pushed now would start (see ``push``)."""
        return self._next_start_pos(self.lead_s) / self.sample_rate

    def next_ready_start(self) -> float:
        """Clock time at which a segment pushed now with :meth:`push_ready` would start."""
        return self._next_start_pos(min(self.lead_s, self.ready_lead_s)) / self.sample_rate

    def _next_start_pos(self, lead_s: float) -> int:
        now = self._pos(self.clock.now())
        guard = now + round(_GUARD_S * self.sample_rate)
        if self._end >= guard:
            return self._end  # gapless
        if self._end > now:  # ends too soon to continue seamlessly: smallest gap possible
            return self._on_frame_grid(guard)
        return self._on_frame_grid(now + round(lead_s * self.sample_rate))

    def flush(self, at: float | None = None) -> float:
        """Barge-in: drop everything scheduled after ``at`` (default now).

        The 20 ms audio frame the audio track already fetched still plays out; nothing after
        it does, and video returns to idle at ``at``. Returns the seconds of media dropped.
        """
        cut = self._pos(self.clock.now() if at is None else at)
        dropped = 0
        kept: deque[_Segment] = deque()
        for seg in self._segments:
            if seg.end <= cut:
                kept.append(seg)
            elif seg.start >= cut:
                dropped += len(seg.audio)
            else:
                keep = cut - seg.start
                dropped += len(seg.audio) - keep
                n_frames = math.ceil(keep * self.fps / self.sample_rate)
                kept.append(_Segment(seg.start, seg.audio[:keep], seg.frames[:n_frames]))
        self._segments = kept
        self._end = min(self._end, cut)
        return dropped / self.sample_rate

    # -- lookups ------------------------------------------------------------------------

    def audio_at(self, t: float, n: int) -> np.ndarray:
        """The ``n`` samples of the timeline starting at clock time ``t`` (silence where idle).

        Segments that ended well before ``t`` are forgotten.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        pos = self._pos(t)
        keep_s = _KEEP_S + max(0.0, self.video_offset_s)
        self._forget(pos - round(keep_s * self.sample_rate))
        out = np.zeros(n, dtype=np.int16)
        end = pos + n
        for seg in self._segments:
            if seg.start >= end:
                break
            lo, hi = max(pos, seg.start), min(end, seg.end)
            if lo < hi:
                out[lo - pos : hi - pos] = seg.audio[lo - seg.start : hi - seg.start]
        return out

    def frame_at(self, t: float) -> np.ndarray | None:
        """The scheduled frame shown at clock time ``t`` (after ``video_offset_s``), or None."""
        pos = math.floor((t - self.video_offset_s) * self.sample_rate + 1e-6)
        self._forget(pos - round(_KEEP_S * self.sample_rate))
        for seg in self._segments:
            if seg.start > pos:
                break
            if pos < seg.end:
                idx = (pos - seg.start) * self.fps // self.sample_rate
                return seg.frames[min(idx, len(seg.frames) - 1)]
        return None

    def speaking(self, t: float) -> bool:
        """True when audio is scheduled at clock time ``t``."""
        pos = self._pos(t)
        return any(seg.start <= pos < seg.end for seg in self._segments)

    @property
    def busy_until(self) -> float:
        """Clock time at which the last scheduled segment ends (0.0 before any push)."""
        return self._end / self.sample_rate

    @property
    def queued_s(self) -> float:
        """Seconds of media scheduled after now."""
        return max(0.0, self.busy_until - self.clock.now())

    def _on_frame_grid(self, pos: int) -> int:
        """Round a start position up to the video frame grid (clock multiples of 1 / fps).

        :class:`~media.tracks.ClockedVideoTrack` ticks on the same grid, so a segment's first
        frame is shown exactly when its audio starts.
        """
        if self.sample_rate % self.fps:
            return pos
        step = self.sample_rate // self.fps
        return -(-pos // step) * step

    def _pos(self, t: float) -> int:
        return round(t * self.sample_rate)

    def _forget(self, before: int) -> None:
        while self._segments and self._segments[0].end <= before:
            self._segments.popleft()


class IdleLoop:
    """Idle frames played forward then backward (ping-pong), so the loop never jumps.

    A single frame is a still picture.
    """

    def __init__(self, frames: Sequence[np.ndarray], fps: int = 25) -> None:
        if len(frames) == 0:
            raise ValueError("IdleLoop needs at least one frame")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3:
                raise ValueError(f"idle frame {i} must be an (H, W, 3) uint8 array")
        self.frames = list(frames)
        self.fps = fps

    def index_at(self, t: float) -> int:
        """Index into ``frames`` shown at clock time ``t``."""
        n = len(self.frames)
        if n == 1:
            return 0
        period = 2 * (n - 1)
        k = math.floor(t * self.fps + 1e-6) % period
        return k if k < n else period - k

    def frame_at(self, t: float) -> np.ndarray:
        """The idle frame shown at clock time ``t``."""
        return self.frames[self.index_at(t)]
