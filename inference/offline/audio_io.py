"""Reply audio for the offline renderer: any audio file decoded by PyAV, or TTS of a text.

Audio is kept as mono int16 PCM at its own rate for the MP4's sound track; the renderer gets
the :func:`~inference.render.base.render_input` of it (``as_chunk``), as in a live call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.audio import resample_int16
from inference.types import PcmChunk

from .errors import AudioInputError, OfflineInputError

if TYPE_CHECKING:  # the TTS package loads only when text is spoken
    from inference.tts.base import Tts

__all__ = ["Pcm", "read_audio_file", "synthesize_text"]


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono int16 samples at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("Pcm.samples must be a 1-D int16 array")
        if self.rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.rate}")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate

    def as_chunk(self) -> PcmChunk:
        """The whole audio as one piece of reply audio (what ``render_input`` takes)."""
        return PcmChunk(self.samples, self.rate)


def read_audio_file(path: Path, *, max_seconds: float = 3600.0) -> Pcm:
    """Decode the first audio stream of ``path`` (any format FFmpeg reads) to mono int16.

    Keeps the file's sample rate. Raises ``AudioInputError`` naming the file when it is
    missing, unreadable, has no audio stream, is empty or longer than ``max_seconds``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"audio file not found: {path}")
    chunks: list[np.ndarray] = []
    rate = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioInputError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            if rate <= 0:
                raise AudioInputError(f"{path}: unknown sample rate")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            total = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > max_seconds * rate:
                    raise AudioInputError(f"{path}: longer than {max_seconds:g} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
    except AudioInputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioInputError(f"{path}: cannot decode audio: {exc}") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if len(samples) == 0:
        raise AudioInputError(f"{path}: the audio stream holds no samples")
    return Pcm(samples, rate)


async def synthesize_text(tts: Tts, text: str, language: str) -> Pcm:
    """The whole TTS output for ``text`` as one ``Pcm`` (chunks joined at the first rate)."""
    if not text.strip():
        raise OfflineInputError("text to speak is empty")
    parts: list[np.ndarray] = []
    rate = 0
    async for chunk in tts.synthesize(text, language):
        if rate == 0:
            rate = chunk.sample_rate
        samples = chunk.samples
        if chunk.sample_rate != rate:
            samples = resample_int16(samples, chunk.sample_rate, rate)
        parts.append(samples)
    samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    if rate == 0 or len(samples) == 0:
        raise OfflineInputError(f"TTS produced no audio for {text[:60]!r}")
    return Pcm(samples.astype(np.int16, copy=False), rate)
