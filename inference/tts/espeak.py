"""Text-to-speech with the ``espeak-ng`` binary: Mandarin (voice ``cmn``) or any espeak voice.

Robotic but offline and tiny. Each sentence runs one ``espeak-ng --stdout`` process through
asyncio's subprocess API; its WAV output (whose header sizes are bogus when streamed) is
parsed here.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from inference.dialogue.sentences import split_sentences
from inference.registry import Backend, BackendSettings
from inference.tts.base import Tts
from inference.types import PcmChunk

__all__ = [
    "BACKEND",
    "EspeakNotFoundError",
    "EspeakTts",
    "EspeakTtsOptions",
    "EspeakTtsSettings",
    "parse_wav",
]

_DEFAULT_RATE = 22050


class EspeakNotFoundError(FileNotFoundError):
    """The espeak-ng binary is not installed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EspeakTtsOptions:
    """``voice``: an espeak-ng voice (``cmn`` Mandarin, ``en-us``, ...); ``speed_wpm``
    words per minute (80-450); ``pitch`` 0-99; ``amplitude`` 0-200; ``binary`` name or path."""

    voice: str = "cmn"
    speed_wpm: int = 165
    pitch: int = 50
    amplitude: int = 100
    binary: str = "espeak-ng"

    def __post_init__(self) -> None:
        if not self.voice or not all(c.isalnum() or c in "-_+/" for c in self.voice):
            raise ValueError(f"invalid espeak voice name {self.voice!r}")
        if not 80 <= self.speed_wpm <= 450:
            raise ValueError(f"speed_wpm must be in [80, 450], got {self.speed_wpm}")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch must be in [0, 99], got {self.pitch}")
        if not 0 <= self.amplitude <= 200:
            raise ValueError(f"amplitude must be in [0, 200], got {self.amplitude}")


class EspeakTts:
    """The :class:`~inference.tts.base.Tts` on espeak-ng; stateless, share one per process."""

    def __init__(self, options: EspeakTtsOptions | None = None) -> None:
        self._options = options or EspeakTtsOptions()
        found = shutil.which(self._options.binary)
        if found is None:
            raise EspeakNotFoundError(
                f"espeak-ng binary {self._options.binary!r} not found on PATH "
                "(install it: apt-get install espeak-ng)"
            )
        self._binary = found

    async def synthesize(self, text: str, language: str = "zh") -> AsyncGenerator[PcmChunk, None]:
        """One chunk per sentence of ``text``; the last has ``final=True``."""
        sentences = split_sentences(text)
        if not sentences:
            yield PcmChunk(np.zeros(0, dtype=np.int16), _DEFAULT_RATE, final=True)
            return
        for n, sentence in enumerate(sentences):
            samples, rate = await self._run(sentence)
            yield PcmChunk(samples, rate, final=n == len(sentences) - 1)

    async def _run(self, sentence: str) -> tuple[np.ndarray, int]:
        opts = self._options
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "-v", opts.voice,
            "-s", str(opts.speed_wpm),
            "-p", str(opts.pitch),
            "-a", str(opts.amplitude),
            "-b", "1",
            "--stdout",
            "--stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await proc.communicate(sentence.encode("utf-8"))
        finally:
            if proc.returncode is None:  # cancelled mid-sentence
                proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            message = err.decode("utf-8", "replace").strip()
            raise RuntimeError(f"espeak-ng failed (voice {opts.voice!r}): {message}")
        return parse_wav(out)


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV bytes → (int16 samples, sample rate).

    Tolerates the placeholder sizes espeak-ng writes when streaming to a pipe: a data chunk
    runs to the end of the bytes at most.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos = 12
    rate = channels = bits = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt != 1 or channels != 1 or bits != 16:
                raise ValueError(
                    f"expected mono 16-bit PCM, got format {fmt}, {channels} ch, {bits} bit"
                )
        elif chunk_id == b"data":
            if not rate:
                raise ValueError("WAV data chunk before its fmt chunk")
            end = min(body + size, len(data))
            end -= (end - body) % 2
            return np.frombuffer(data[body:end], dtype="<i2").astype(np.int16), rate
        pos = body + size + (size % 2)
    raise ValueError("WAV stream has no data chunk")


class EspeakTtsSettings(BackendSettings):
    """``tts: {backend: espeak}``: espeak-ng alone, in one voice for every language."""

    backend: Literal["espeak"] = "espeak"
    voice: str = "cmn"
    speed_wpm: int = Field(165, ge=80, le=450)
    pitch: int = Field(50, ge=0, le=99)
    amplitude: int = Field(100, ge=0, le=200)

    def options(self) -> EspeakTtsOptions:
        return EspeakTtsOptions(
            voice=self.voice, speed_wpm=self.speed_wpm, pitch=self.pitch, amplitude=self.amplitude
        )


BACKEND: Backend[Tts] = Backend(
    name="espeak", options=EspeakTtsOptions, make=EspeakTts, settings=EspeakTtsSettings
)
