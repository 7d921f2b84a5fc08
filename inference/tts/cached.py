"""A Tts that consults a :class:`~inference.cache.TieredCache` before synthesizing.

The key covers the text, the language and ``voice_id`` (the engine, voice file, synthesis
parameters and package versions: whatever changes the sound). A hit yields the stored chunks
exactly as the engine once did (same boundaries, same ``final`` flag); a miss streams the
engine's chunks through and stores them only when the synthesis finished (a cancelled one
is not stored).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np

from inference.cache import TieredCache, cache_key
from inference.tts.base import Tts
from inference.types import PcmChunk

__all__ = ["CachedTts", "CachedTtsOptions", "decode_chunks", "encode_chunks"]

_HEAD = struct.Struct("<II")  # sample rate, number of chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedTtsOptions:
    """``voice_id``: everything besides the text that changes the audio."""

    voice_id: str

    def __post_init__(self) -> None:
        if not self.voice_id:
            raise ValueError("voice_id must not be empty")


def encode_chunks(chunks: list[PcmChunk]) -> bytes:
    """Chunks of one sample rate as bytes (rate, lengths, samples)."""
    if not chunks:
        raise ValueError("nothing to encode")
    rate = chunks[0].sample_rate
    if any(c.sample_rate != rate for c in chunks):
        raise ValueError("chunks of one synthesis must share a sample rate")
    lengths = struct.pack(f"<{len(chunks)}I", *(len(c.samples) for c in chunks))
    body = b"".join(c.samples.astype("<i2").tobytes() for c in chunks)
    return _HEAD.pack(rate, len(chunks)) + lengths + body


def decode_chunks(data: bytes) -> list[PcmChunk]:
    """The inverse of :func:`encode_chunks` (ValueError when the bytes do not fit)."""
    rate, n = _HEAD.unpack_from(data)
    lengths = struct.unpack_from(f"<{n}I", data, _HEAD.size)
    offset = _HEAD.size + 4 * n
    if len(data) - offset != 2 * sum(lengths) or n == 0:
        raise ValueError("cached speech has the wrong length")
    samples = np.frombuffer(data, dtype="<i2", offset=offset).astype(np.int16)
    out, pos = [], 0
    for i, length in enumerate(lengths):
        out.append(PcmChunk(samples[pos : pos + length], rate, final=i == n - 1))
        pos += length
    return out


class CachedTts:
    """A caching view on a shared engine (itself shared; it holds no per-call state)."""

    def __init__(self, inner: Tts, cache: TieredCache, options: CachedTtsOptions) -> None:
        self.inner = inner
        self.cache = cache
        self.options = options

    def key(self, text: str, language: str) -> str:
        return cache_key("tts", self.options.voice_id, language, text.strip())

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        key = self.key(text, language)
        data = await self.cache.aget(key, kind="tts")
        if data is not None:
            try:
                chunks = decode_chunks(data)
            except (ValueError, struct.error):
                chunks = []
            for chunk in chunks:
                yield chunk
            if chunks:
                return
        collected: list[PcmChunk] = []
        async for chunk in self.inner.synthesize(text, language):
            collected.append(chunk)
            yield chunk
        if collected and any(len(c.samples) for c in collected):
            await self.cache.aput(key, encode_chunks(collected))
