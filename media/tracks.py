"""Outgoing aiortc tracks paced by the call's :class:`~media.clock.MediaClock`.

Both tracks read the one :class:`~media.player.AvPlayer` of the call, so audio and video
come from one timeline. Audio is continuous (the Opus encoder counts samples and ignores
pts, so a skipped frame would shift the whole audio timeline); video takes its pts from the
clock and drops stale ticks instead of bursting after a stall.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.clock import MediaClock
from media.player import AvPlayer, IdleLoop

__all__ = ["AUDIO_PTIME", "VIDEO_CLOCK_RATE", "ClockedAudioTrack", "ClockedVideoTrack"]

AUDIO_PTIME = 0.020
VIDEO_CLOCK_RATE = 90000
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

FrameHook = Callable[[float, bool], None]


class ClockedAudioTrack(MediaStreamTrack):
    """Continuous 20 ms mono s16 frames of the player's timeline.

    Frame ``k`` covers clock time ``[start + k * 0.02, start + (k + 1) * 0.02)`` and is
    released at its start time. pts is the running sample count. After a stall the track
    catches up (releases due frames at once) for at most ``max_catchup_s``; when further
    behind it jumps forward to the current time and adds the frames it passed over to
    ``frames_skipped``.
    """

    kind = "audio"

    def __init__(self, player: AvPlayer, clock: MediaClock, *, max_catchup_s: float = 0.2):
        super().__init__()
        if player.sample_rate % 50:
            raise ValueError(f"sample rate {player.sample_rate} has no whole 20 ms frame")
        if max_catchup_s < 0:
            raise ValueError(f"max_catchup_s must be >= 0, got {max_catchup_s}")
        self.player = player
        self.clock = clock
        self.max_catchup_s = max_catchup_s
        self.sample_rate = player.sample_rate
        self.samples_per_frame = player.sample_rate // 50
        self._time_base = fractions.Fraction(1, self.sample_rate)
        self._start_pos: int | None = None  # sample position of frame 0 on the timeline
        self._k = -1
        self._pts = 0
        self.frames_sent = 0
        self.frames_skipped = 0

    @property
    def start_time(self) -> float | None:
        """Clock time of the first frame (None before the first ``recv``)."""
        return None if self._start_pos is None else self._start_pos / self.sample_rate

    def frame_time(self, k: int) -> float:
        """Clock time at which frame ``k`` starts."""
        if self._start_pos is None:
            raise RuntimeError("the track has not started")
        return (self._start_pos + k * self.samples_per_frame) / self.sample_rate

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_pos is None:
            self._start_pos = round(self.clock.now() * self.sample_rate)
            self._k = 0
        else:
            self._k += 1
            behind = self.clock.now() - self.frame_time(self._k)
            if behind > self.max_catchup_s:
                skip = math.floor(behind / AUDIO_PTIME)
                self._k += skip
                self.frames_skipped += skip
            await self.clock.sleep_until(self.frame_time(self._k))
        samples = self.player.audio_at(self.frame_time(self._k), self.samples_per_frame)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += self.samples_per_frame
        self.frames_sent += 1
        return frame


class ClockedVideoTrack(MediaStreamTrack):
    """Video frames at ``fps`` from the player, or the idle loop when nothing is scheduled.

    Ticks lie on the clock's frame grid: tick ``j`` is released at clock time ``j / fps``
    with pts ``round(t * 90000)`` (the player starts segments on the same grid, so a reply's
    first frame is shown exactly with its first audio). A tick that is already stale (a newer
    tick is due) is dropped and counted in ``frames_dropped``, never sent late in a burst.
    ``on_frame(t, is_reply_frame)`` is called for every frame sent. Frame size may change
    from frame to frame; ``fps`` and the idle loop can be changed while running.
    """

    kind = "video"

    def __init__(
        self,
        player: AvPlayer,
        clock: MediaClock,
        idle: IdleLoop,
        fps: int = 25,
        *,
        on_frame: FrameHook | None = None,
    ) -> None:
        super().__init__()
        self.player = player
        self.clock = clock
        self._idle = idle
        self._fps = self._check_fps(fps)
        self.on_frame = on_frame
        self._j = -1
        self._last_t: float | None = None
        self._first_t: float | None = None
        self.frames_sent = 0
        self.frames_dropped = 0
        self.reply_frames_sent = 0

    @staticmethod
    def _check_fps(fps: int) -> int:
        if not 1 <= fps <= 60:
            raise ValueError(f"fps must be within 1..60, got {fps}")
        return fps

    @property
    def fps(self) -> int:
        return self._fps

    @fps.setter
    def fps(self, value: int) -> None:
        """Change the frame rate; the next tick is the next one of the new grid."""
        value = self._check_fps(value)
        if value != self._fps and self._j >= 0:
            # Count from the tick already scheduled (recv may be sleeping towards it), so
            # the next timestamp is always later than every one handed out.
            self._j = math.floor(self._j / self._fps * value + 1e-6)
        self._fps = value

    def set_idle(self, idle: IdleLoop) -> None:
        """Replace the idle loop (e.g. after a quality change); takes effect next frame."""
        self._idle = idle

    @property
    def start_time(self) -> float | None:
        """Clock time of the first frame sent (None before the first ``recv``)."""
        return self._first_t

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self.clock.now()
        if self._last_t is None:
            j = math.ceil(now * self._fps - 1e-6)  # the first grid tick at or after now
        else:
            j = self._j + 1
            newest = math.floor(now * self._fps + 1e-6)
            if newest > j:
                self.frames_dropped += newest - j
                j = newest
            if j / self._fps <= self._last_t:  # never repeat or go back in time
                j = math.floor(self._last_t * self._fps + 1e-6) + 1
        self._j = j
        t = j / self._fps
        await self.clock.sleep_until(t)
        if self._first_t is None:
            self._first_t = t
        self._last_t = t
        rgb = self.player.frame_at(t)
        is_reply = rgb is not None
        if rgb is None:
            rgb = self._idle.frame_at(t)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = round(t * VIDEO_CLOCK_RATE)
        frame.time_base = _VIDEO_TIME_BASE
        self.frames_sent += 1
        if is_reply:
            self.reply_frames_sent += 1
        if self.on_frame is not None:
            self.on_frame(t, is_reply)
        return frame
