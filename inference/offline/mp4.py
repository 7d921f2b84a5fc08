"""Atomic MP4 writing with PyAV: H.264 video (yuv420p) and AAC audio, interleaved as written.

The file is written under a hidden temporary name in the target folder and renamed into
place by ``commit``; ``abort`` (or an exception inside the ``with`` block) removes it, so a
failed render never leaves a partial MP4 behind.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np

from inference.audio import resample_int16

from .audio_io import Pcm

__all__ = ["AAC_RATES", "Mp4Options", "Mp4Writer", "pick_video_codec"]

_log = logging.getLogger(__name__)
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_CRF_CODECS = ("libx264",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mp4Options:
    """Encoder settings. ``video_codecs`` are tried in order (the first PyAV has wins)."""

    video_codecs: tuple[str, ...] = ("libx264", "h264", "libopenh264", "mpeg4")
    crf: int = 20  # libx264 quality (lower is better)
    preset: str = "veryfast"  # libx264 speed preset
    video_bitrate: int = 2_000_000  # for encoders without CRF (openh264, mpeg4)
    audio_bitrate: int = 128_000
    faststart: bool = True  # moov atom first, so browsers play it while downloading

    def __post_init__(self) -> None:
        if not self.video_codecs:
            raise ValueError("video_codecs must name at least one encoder")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be within 0..51, got {self.crf}")
        if not 100_000 <= self.video_bitrate <= 100_000_000:
            raise ValueError("video_bitrate must be within 100k..100M")
        if not 16_000 <= self.audio_bitrate <= 512_000:
            raise ValueError("audio_bitrate must be within 16k..512k")


def pick_video_codec(preferences: Sequence[str]) -> str:
    """The first encoder of ``preferences`` this PyAV build has; logs when it falls back."""
    from av.codec import Codec

    for i, name in enumerate(preferences):
        try:
            codec = Codec(name, "w")
        except Exception:  # av raises UnknownCodecError (a ValueError) or FFmpegError
            continue
        if i > 0:
            _log.warning(
                "video encoder %s is not in this PyAV build; encoding with %s (%s)",
                preferences[0],
                codec.name,
                ", ".join(f"{p} missing" for p in preferences[:i]),
            )
        return str(codec.name)
    raise RuntimeError(f"none of the video encoders {', '.join(preferences)} is in this PyAV build")


class Mp4Writer:
    """Writes one MP4: ``write`` frames as they come, then ``commit`` (or ``abort``).

    ``audio`` is the whole sound track; it is encoded in step with the video so the file
    is interleaved. Frames are RGB uint8 (height, width, 3) of ``size`` = (width, height).
    """

    def __init__(
        self,
        path: Path,
        *,
        fps: int,
        size: tuple[int, int],
        audio: Pcm,
        options: Mp4Options | None = None,
        video_codec: str | None = None,
    ) -> None:
        import av

        self.options = opts = options or Mp4Options()
        width, height = size
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError(f"frame size must be even and at least 16×16, got {width}×{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp"
        self.size = (width, height)
        self.fps = fps
        self.frames_written = 0
        self._closed = False
        self._lock = threading.Lock()  # abort (a cancelled job) waits for a write in a thread
        rate = audio.rate if audio.rate in AAC_RATES else 48000
        self._audio = resample_int16(audio.samples, audio.rate, rate)
        self._rate = rate
        self._audio_pos = 0
        self.video_codec = video_codec or pick_video_codec(opts.video_codecs)
        container_options = {"movflags": "+faststart"} if opts.faststart else {}
        self._container: Any = cast(
            Any, av.open(str(self._tmp), "w", format="mp4", options=container_options)
        )
        try:
            self._video: Any = self._container.add_stream(self.video_codec, rate=fps)
            self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
            if self.video_codec in _CRF_CODECS:
                self._video.options = {"preset": opts.preset, "crf": str(opts.crf)}
            else:
                self._video.bit_rate = opts.video_bitrate
            self._sound: Any = self._container.add_stream("aac", rate=rate, layout="mono")
            self._sound.bit_rate = opts.audio_bitrate
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None or not self._closed:
            self.abort()

    def write(self, frames: Sequence[np.ndarray]) -> None:
        """Encode ``frames`` (and the audio they cover)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            self._write(frames)

    def _write(self, frames: Sequence[np.ndarray]) -> None:
        import av

        width, height = self.size
        for image in frames:
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"frame {self.frames_written} is {image.shape} {image.dtype}, "
                    f"expected ({height}, {width}, 3) uint8"
                )
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written
            self._mux(self._video.encode(frame))
            self.frames_written += 1
        self._write_audio(self.frames_written * self._rate // self.fps)

    def commit(self) -> Path:
        """Flush the encoders, close the file and rename it into place; returns the path."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            return self._commit()

    def _commit(self) -> Path:
        try:
            self._write_audio(len(self._audio))
            self._mux(self._video.encode(None))
            self._mux(self._sound.encode(None))
            self._container.close()
            self._closed = True
            os.replace(self._tmp, self.path)
        except BaseException:
            self._abort()
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (idempotent; waits for a write in progress)."""
        with self._lock:
            self._abort()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception as exc:  # closing a half-written file may fail; it is deleted
                _log.debug("closing an aborted MP4 failed: %s", exc)
        self._tmp.unlink(missing_ok=True)

    def _write_audio(self, until: int) -> None:
        import av

        until = min(until, len(self._audio))
        step = 1024 * 8
        while self._audio_pos < until:
            end = min(until, self._audio_pos + step)
            chunk = self._audio[self._audio_pos : end].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._audio_pos
            self._mux(self._sound.encode(frame))
            self._audio_pos = end

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)
