"""What the recording bot receives: arrival-stamped frames and their MP4 recording."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["Mp4Recorder", "ReceivedMedia", "consume_audio", "consume_video"]

_AUDIO_RATE = 48_000
_ANALYSIS_WIDTH = 256  # received video is kept as grey frames at most this wide


@dataclass(slots=True)
class ReceivedMedia:
    """Every received frame with its arrival time (``time.monotonic`` seconds)."""

    audio_chunks: list[np.ndarray] = field(default_factory=list)  # mono int16, 48 kHz
    audio_t: list[float] = field(default_factory=list)
    video_frames: list[np.ndarray] = field(default_factory=list)  # grey uint8, downscaled
    video_t: list[float] = field(default_factory=list)
    video_sizes: set[tuple[int, int]] = field(default_factory=set)  # (width, height) received


def _mono_s16(frame: av.AudioFrame) -> np.ndarray:
    x = frame.to_ndarray()
    if frame.format.is_planar:
        mono = x.astype(np.float64).mean(axis=0)
    else:
        mono = x.reshape(-1, len(frame.layout.channels)).astype(np.float64).mean(axis=1)
    if frame.format.name.startswith(("flt", "dbl")):
        mono = mono * 32768.0
    return np.clip(np.round(mono), -32768, 32767).astype(np.int16)


async def consume_audio(
    track: MediaStreamTrack,
    media: ReceivedMedia,
    *,
    recorder: Mp4Recorder | None = None,
    on_chunk: Callable[[np.ndarray, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Receive audio until the track ends, stamping each frame on arrival."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        t = clock()
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(f"audio track yielded {type(frame).__name__}, not AudioFrame")
        if frame.sample_rate != _AUDIO_RATE:
            raise ValueError(f"received audio at {frame.sample_rate} Hz, expected 48000")
        pcm = _mono_s16(frame)
        media.audio_chunks.append(pcm)
        media.audio_t.append(t)
        if recorder is not None:
            recorder.add_audio(pcm, t)
        if on_chunk is not None:
            on_chunk(pcm, t)


async def consume_video(
    track: MediaStreamTrack,
    media: ReceivedMedia,
    *,
    recorder: Mp4Recorder | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Receive video until the track ends, keeping a small grey copy of each frame."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        t = clock()
        if not isinstance(frame, av.VideoFrame):
            raise TypeError(f"video track yielded {type(frame).__name__}, not VideoFrame")
        w, h = frame.width, frame.height
        media.video_sizes.add((w, h))
        sw = min(w, _ANALYSIS_WIDTH)
        sh = max(2, round(h * sw / w))
        grey = frame.reformat(width=sw, height=sh, format="gray").to_ndarray()
        media.video_frames.append(grey)
        media.video_t.append(t)
        if recorder is not None:
            recorder.add_video(frame, t)


class Mp4Recorder:
    """Writes received audio (AAC) and video (H.264) to MP4 on one worker thread.

    Timestamps come from arrival times, so the file shows what the caller saw and heard.
    The video size is fixed by the first frame; later frames of another size are scaled.
    """

    def __init__(self, path: str | Path, *, fps: int = 25) -> None:
        self._path = Path(path)
        self._fps = fps
        self._queue: asyncio.Queue[tuple[str, object, float] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._t0: float | None = None
        self._container: av.container.OutputContainer | None = None
        self._vstream: av.VideoStream | None = None
        self._astream: av.AudioStream | None = None
        self._pending_audio: list[tuple[np.ndarray, float]] = []
        self._audio_pos = 0  # samples written
        self._last_vpts = -1
        self.frames_written = {"audio": 0, "video": 0}

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run())

    def add_audio(self, pcm: np.ndarray, t: float) -> None:
        self._queue.put_nowait(("a", pcm, t))

    def add_video(self, frame: av.VideoFrame, t: float) -> None:
        self._queue.put_nowait(("v", frame, t))

    async def close(self) -> None:
        """Flush the encoders and finish the file."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None

    async def _run(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                await asyncio.to_thread(self._write, *item)
        finally:
            await asyncio.to_thread(self._finish)

    def _open(self, width: int | None, height: int | None) -> None:
        c = av.open(str(self._path), mode="w", format="mp4")
        if width is not None and height is not None:
            v = c.add_stream("libx264", rate=self._fps, options={"preset": "ultrafast"})
            v.width, v.height = width - width % 2, height - height % 2
            v.pix_fmt = "yuv420p"
            v.codec_context.time_base = fractions.Fraction(1, 1000)
            self._vstream = v
        a = c.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
        self._astream = a
        self._container = c
        pending, self._pending_audio = self._pending_audio, []
        for pcm, t in pending:
            self._write_audio(pcm, t)

    def _write(self, kind: str, payload: object, t: float) -> None:
        if self._t0 is None:
            self._t0 = t
        if kind == "a":
            assert isinstance(payload, np.ndarray)
            if self._container is None:
                self._pending_audio.append((payload, t))
            else:
                self._write_audio(payload, t)
        else:
            assert isinstance(payload, av.VideoFrame)
            if self._container is None:
                self._open(payload.width, payload.height)
            self._write_video(payload, t)

    def _encode_audio(self, pcm: np.ndarray) -> None:
        assert self._container is not None and self._astream is not None
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = _AUDIO_RATE
        frame.pts = self._audio_pos
        frame.time_base = fractions.Fraction(1, _AUDIO_RATE)
        self._audio_pos += pcm.size
        for packet in self._astream.encode(frame):
            self._container.mux(packet)

    def _write_audio(self, pcm: np.ndarray, t: float) -> None:
        assert self._t0 is not None
        start = round((t - self._t0) * _AUDIO_RATE) - pcm.size
        gap = start - self._audio_pos
        if gap > _AUDIO_RATE // 10:  # a hole in the stream: keep the file's timeline true
            while gap > 0:
                n = min(gap, 960)
                self._encode_audio(np.zeros(n, np.int16))
                gap -= n
        self._encode_audio(pcm)
        self.frames_written["audio"] += 1

    def _write_video(self, frame: av.VideoFrame, t: float) -> None:
        assert self._container is not None and self._vstream is not None and self._t0 is not None
        v = self._vstream
        out = frame.reformat(width=v.width, height=v.height, format="yuv420p")
        pts = max(round((t - self._t0) * 1000), self._last_vpts + 1)
        self._last_vpts = pts
        out.pts = pts
        out.time_base = fractions.Fraction(1, 1000)
        for packet in v.encode(out):
            self._container.mux(packet)
        self.frames_written["video"] += 1

    def _finish(self) -> None:
        if self._container is None:
            if not self._pending_audio:
                return
            self._open(None, None)
        c = self._container
        assert c is not None
        with contextlib.suppress(av.FFmpegError):
            for s in (self._vstream, self._astream):
                if s is not None:
                    for packet in s.encode(None):
                        c.mux(packet)
        c.close()
        self._container = None
