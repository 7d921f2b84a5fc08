"""One call's media on disk: the caller's microphone and the avatar's voice and face.

:class:`MediaRecording` reads the call's :class:`~media.player.AvPlayer` timeline a little
behind the clock (``lag_s``: what the tracks have sent by then is final, barge-ins
included) the same way the outgoing tracks do (a scheduled frame, else the idle loop's),
takes the caller's 20 ms frames from a mic tap, and hands both to one writer thread that
muxes them with PyAV into a Matroska file: H.264 video, the avatar's voice and the caller as
two Opus tracks. Writing never blocks the call: a full disk or an unwritable folder ends
the recording (``failure`` says why) and the call goes on.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from media.player import AvPlayer, IdleLoop

__all__ = ["MediaRecording", "RecordingOptions", "RecordingSummary"]

log = logging.getLogger(__name__)

_CALLER_RATE = 16000
_CALLER_FRAME = 320  # 20 ms


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingOptions:
    """``path``: the file (Matroska); ``lag_s``: how far behind the clock the timeline is
    read; ``tick_s``: how often; ``max_backlog``: ticks the writer may fall behind before
    the recording is given up (so a stuck disk cannot grow memory)."""

    path: Path
    fps: int = 25
    lag_s: float = 0.4
    tick_s: float = 0.2
    max_backlog: int = 100
    crf: int = 30

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.tick_s <= 0 or self.lag_s < 0 or self.max_backlog < 1:
            raise ValueError("fps, tick_s, max_backlog must be positive and lag_s >= 0")


@dataclass(slots=True)
class RecordingSummary:
    """What a recording wrote (``failure``: why it stopped early, else None)."""

    path: Path
    seconds: float = 0.0
    video_frames: int = 0
    caller_s: float = 0.0
    bytes: int = 0
    failure: str | None = None


@dataclass(slots=True)
class _Tick:
    audio: np.ndarray  # the avatar's voice, 48 kHz int16, right after the previous tick's
    frames: list[tuple[int, np.ndarray]]  # (frame index, RGB)
    caller: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (s since start, pcm)


class MediaRecording:
    """Records one call; :meth:`run` as a task, :meth:`caller` as the call's mic tap,
    :meth:`stop` at the end (it waits for the file to be closed)."""

    def __init__(
        self,
        options: RecordingOptions,
        *,
        player: AvPlayer,
        idle: IdleLoop,
        now: Callable[[], float],
    ) -> None:
        self.options = options
        self._player = player
        self._idle = idle
        self._now = now
        self._t0 = now()
        self._next_frame = 0
        self._audio_pos = 0
        self._caller: list[tuple[float, np.ndarray]] = []
        self._inbox: queue.Queue[_Tick | None] = queue.Queue()
        self._stopping = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.summary = RecordingSummary(path=options.path)

    @property
    def failure(self) -> str | None:
        return self.summary.failure

    def caller(self, frame: np.ndarray, now: float) -> None:
        """A 20 ms caller frame (16 kHz int16) heard at clock time ``now``; never raises."""
        if self.summary.failure is None and len(frame) == _CALLER_FRAME:
            self._caller.append((now - self._t0, frame))

    async def run(self) -> None:
        """Read the timeline every ``tick_s`` and feed the writer until :meth:`stop`."""
        self._thread = threading.Thread(
            target=self._write, name=f"recording-{self.options.path.stem}", daemon=True
        )
        self._thread.start()
        try:
            while self.summary.failure is None:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.options.tick_s)
                    return  # stop() writes the rest
                except TimeoutError:
                    self._tick(self._now() - self.options.lag_s)
        finally:
            if not self._stopping.is_set():  # cancelled or failed: the writer ends too
                self._inbox.put(None)

    def _tick(self, until: float) -> None:
        if self.summary.failure is not None:
            return
        if self._inbox.qsize() >= self.options.max_backlog:
            self.summary.failure = "the disk is too slow: the recording fell behind"
            return
        rate, fps = self._player.sample_rate, self.options.fps
        end_pos = max(self._audio_pos, round((until - self._t0) * rate))
        audio = self._player.audio_at(self._t0 + self._audio_pos / rate, end_pos - self._audio_pos)
        frames = []
        while self._t0 + self._next_frame / fps < until:
            t = self._t0 + self._next_frame / fps
            face = self._player.frame_at(t)
            frames.append((self._next_frame, face if face is not None else self._idle.frame_at(t)))
            self._next_frame += 1
        tick = _Tick(audio=audio, frames=frames, caller=self._caller)
        self._caller = []
        self._audio_pos = end_pos
        self._inbox.put(tick)

    async def stop(self, timeout_s: float = 10.0) -> RecordingSummary:
        """Write what is left and close the file (waits at most ``timeout_s``)."""
        if self._thread is None:
            self._stopping.set()
            return self.summary
        if not self._stopping.is_set():
            self._stopping.set()
            self._tick(self._now())  # the rest up to now (what was scheduled has been sent)
            self._inbox.put(None)
        done = await asyncio.to_thread(self._done.wait, timeout_s)
        if not done and self.summary.failure is None:
            self.summary.failure = f"the file was not closed within {timeout_s} s"
        return self.summary

    # ---- the writer thread ---------------------------------------------------------------
    def _write(self) -> None:
        writer: _Writer | None = None
        try:
            first = self._idle.frames[0]
            size = (first.shape[1], first.shape[0])  # the face's size as the call starts
            writer = _Writer(self.options, self._player.sample_rate, size)
            while (tick := self._inbox.get()) is not None:
                writer.write(tick, self.summary)
        except Exception as exc:  # a full disk, an unwritable folder, an encoder error
            self.summary.failure = f"{type(exc).__name__}: {exc}"
            log.error("recording %s failed: %s", self.options.path, self.summary.failure)
        finally:
            if writer is not None:
                try:
                    writer.close(self.summary)
                except Exception as exc:
                    if self.summary.failure is None:
                        self.summary.failure = f"{type(exc).__name__}: {exc}"
            self._done.set()


class _Writer:
    """The Matroska file: one video and two audio streams (encoded in the writer thread)."""

    def __init__(self, options: RecordingOptions, voice_rate: int, size: tuple[int, int]) -> None:
        self.options = options
        self.voice_rate = voice_rate
        options.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(options.path), mode="w", format="matroska")
        self.video = self._video_stream(*size)
        self.voice = self._audio_stream(voice_rate)
        self.mic = self._audio_stream(_CALLER_RATE)
        self.voice_pts = 0
        self.mic_pts = 0

    def _audio_stream(self, rate: int) -> av.AudioStream:
        stream = self.container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        return stream

    def _video_stream(self, width: int, height: int) -> av.VideoStream:
        stream = self.container.add_stream("libx264", rate=self.options.fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": str(self.options.crf),
        }
        return stream

    def write(self, tick: _Tick, summary: RecordingSummary) -> None:
        for index, rgb in tick.frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(self.video.width, self.video.height, format="yuv420p")
            frame.pts = index
            frame.time_base = fractions.Fraction(1, self.options.fps)
            self._mux(self.video.encode(frame))
            summary.video_frames += 1
        if len(tick.audio):
            rate = self.voice_rate
            self.voice_pts = self._audio(self.voice, tick.audio, rate, self.voice_pts)
            summary.seconds = self.voice_pts / rate
        for at, pcm in tick.caller:
            gap = min(round(at * _CALLER_RATE) - self.mic_pts, 10 * _CALLER_RATE)
            if gap > 0:  # the caller sent nothing for a while: silence keeps the tracks in step
                self.mic_pts = self._audio(
                    self.mic, np.zeros(gap, np.int16), _CALLER_RATE, self.mic_pts
                )
            self.mic_pts = self._audio(self.mic, pcm, _CALLER_RATE, self.mic_pts)
            summary.caller_s += len(pcm) / _CALLER_RATE

    def _audio(self, stream: av.AudioStream, pcm: np.ndarray, rate: int, pts: int) -> int:
        """Encode ``pcm`` at ``pts``; returns the pts after it (audio is contiguous)."""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, rate)
        self._mux(stream.encode(frame))
        return pts + len(pcm)

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self, summary: RecordingSummary) -> None:
        try:
            for stream in (self.video, self.voice, self.mic):
                self._mux(stream.encode(None))
        finally:
            self.container.close()
            summary.bytes = self.options.path.stat().st_size if self.options.path.exists() else 0
