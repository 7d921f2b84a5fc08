"""The two-level cache and the caching Tts / Renderer wrappers."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from stage_fakes import CountingRenderer

from inference.cache import CacheOptions, TieredCache, cache_key
from inference.render.base import FrameRateFollower, Seekable, rate_follower, seeker
from inference.render.cached import CachedRenderer, CachedRendererOptions, decode_clip, encode_clip
from inference.tts import CachedTts, CachedTtsOptions, FakeTts, FakeTtsOptions
from inference.tts.cached import decode_chunks, encode_chunks


def _files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.bin"))


def test_keys_cover_every_part() -> None:
    base = cache_key("tts", "voice-a", "en", "Hello.")
    assert base == cache_key("tts", "voice-a", "en", "Hello.")
    assert len({base, cache_key("tts", "voice-b", "en", "Hello."),
                cache_key("tts", "voice-a", "zh", "Hello."),
                cache_key("tts", "voice-a", "en", "Hello!"),
                cache_key("tts", "voice-a", "enH", "ello.")}) == 5  # fmt: skip


def test_l1_is_an_lru_bounded_in_bytes() -> None:
    cache = TieredCache(CacheOptions(l1_bytes=300))
    for n in range(3):
        cache.put(f"k{n}", bytes(100))
    assert cache.get("k0") is not None  # k0 is now the most recent
    cache.put("k3", bytes(100))
    assert cache.l1_size == 300 and cache.stats.l1_evictions == 1
    assert cache.get("k1") is None and cache.get("k0") is not None
    cache.put("huge", bytes(400))  # larger than L1: not kept
    assert cache.get("huge") is None
    assert (cache.stats.l1_hits, cache.stats.misses) == (2, 2)


def test_l2_survives_restart_and_is_bounded(tmp_path: Path) -> None:
    opts = CacheOptions(directory=tmp_path, l1_bytes=10_000, l2_bytes=3 * (1000 + 48))
    cache = TieredCache(opts)
    for n in range(3):
        cache.put(f"{n:02d}" * 32, bytes([n]) * 1000)
    assert len(_files(tmp_path)) == 3
    reopened = TieredCache(opts)
    assert reopened.l2_size == cache.l2_size
    assert reopened.get("00" * 32) == bytes([0]) * 1000
    assert reopened.stats.l2_hits == 1 and reopened.get("00" * 32) is not None
    assert reopened.stats.l1_hits == 1
    reopened.put("03" * 32, bytes(1000))  # evicts the least recently used: key 01
    assert reopened.stats.l2_evictions == 1 and reopened.l2_size <= opts.l2_bytes
    assert not (tmp_path / "01" / ("01" * 32 + ".bin")).exists()
    assert TieredCache(opts).get("01" * 32) is None


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "abcd1234.tmp").write_bytes(b"half")
    TieredCache(CacheOptions(directory=tmp_path))
    assert not list(tmp_path.glob("*/*.tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_entries_are_dropped(tmp_path: Path, damage: str) -> None:
    opts = CacheOptions(directory=tmp_path)
    TieredCache(opts).put("ab" * 32, b"payload" * 100)
    (path,) = _files(tmp_path)
    blob = path.read_bytes()
    if damage == "flip":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif damage == "truncate":
        blob = blob[:-10]
    elif damage == "garbage":
        blob = os.urandom(len(blob))
    else:
        blob = b""
    path.write_bytes(blob)
    cache = TieredCache(opts)
    assert cache.get("ab" * 32) is None
    assert cache.stats.corrupt == 1 and cache.stats.misses == 1
    assert not path.exists() and cache.l2_size == 0


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    opts = CacheOptions(directory=tmp_path, l1_bytes=20_000, l2_bytes=60_000)
    caches = [TieredCache(opts), TieredCache(opts)]  # two "processes" share the folder
    errors: list[str] = []

    def worker(n: int) -> None:
        cache = caches[n % 2]
        rng = np.random.default_rng(n)
        for _ in range(150):
            k = int(rng.integers(0, 40))
            key = cache_key("k", k)
            value = bytes([k]) * (500 + 37 * k)
            if rng.random() < 0.5:
                cache.put(key, value)
            else:
                got = cache.get(key)
                if got is not None and got != value:
                    errors.append(f"key {k}: wrong value")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(c.l1_size <= opts.l1_bytes and c.l2_size <= opts.l2_bytes for c in caches)
    assert sum(c.stats.corrupt for c in caches) == 0
    fresh = TieredCache(opts)
    assert fresh.l2_size <= opts.l2_bytes


def test_chunk_and_clip_codecs_round_trip() -> None:
    rng = np.random.default_rng(0)
    from inference.types import PcmChunk

    chunks = [PcmChunk(rng.integers(-999, 999, n).astype(np.int16), 22050) for n in (5, 0, 7)]
    back = decode_chunks(encode_chunks(chunks))
    assert [len(c.samples) for c in back] == [5, 0, 7] and back[-1].final
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(chunks, back, strict=True))
    frames = [rng.integers(0, 255, (8, 6, 3), dtype=np.uint8) for _ in range(4)]
    assert all(
        np.array_equal(a, b) for a, b in zip(frames, decode_clip(encode_clip(frames)), strict=True)
    )
    with pytest.raises(ValueError):
        decode_chunks(encode_chunks(chunks)[:-2])


async def test_cached_tts_hits_after_a_complete_synthesis(tmp_path: Path) -> None:
    cache = TieredCache(CacheOptions(directory=tmp_path))
    inner = FakeTts(FakeTtsOptions())
    tts = CachedTts(inner, cache, CachedTtsOptions(voice_id="fake"))
    first = [c async for c in tts.synthesize("Hello there. Bye.", "en")]
    second = [c async for c in tts.synthesize("Hello there. Bye.", "en")]
    assert len(inner.said) == 1 and cache.stats.by_kind["tts"] == [1, 1]
    assert [c.final for c in second] == [c.final for c in first]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(first, second, strict=True))
    # a restarted process hits L2; another voice misses
    restarted = CachedTts(inner, TieredCache(CacheOptions(directory=tmp_path)), tts.options)
    _ = [c async for c in restarted.synthesize("Hello there. Bye.", "en")]
    assert restarted.cache.stats.l2_hits == 1 and len(inner.said) == 1
    other = CachedTts(inner, cache, CachedTtsOptions(voice_id="other"))
    _ = [c async for c in other.synthesize("Hello there. Bye.", "en")]
    assert len(inner.said) == 2


async def test_cached_tts_does_not_store_a_cancelled_synthesis() -> None:
    cache = TieredCache(CacheOptions())
    inner = FakeTts(FakeTtsOptions())
    tts = CachedTts(inner, cache, CachedTtsOptions(voice_id="fake"))
    stream = tts.synthesize("One. Two. Three.", "en")
    await anext(stream)
    await stream.aclose()  # barge-in after the first sentence
    assert cache.stats.puts == 0
    _ = [c async for c in tts.synthesize("One. Two. Three.", "en")]
    assert len(inner.said) == 2 and cache.stats.puts == 1


async def test_cached_renderer_keys_on_audio_and_size() -> None:
    cache = TieredCache(CacheOptions())
    inner = CountingRenderer()
    r = CachedRenderer(inner, cache, CachedRendererOptions(avatar_id="a", renderer_id="r1"))
    audio = (np.arange(640 * 10) % 300).astype(np.int16)
    first = [f for b in [b async for b in r.render(audio)] for f in b]
    second = [f for b in [b async for b in r.render(audio)] for f in b]
    assert len(inner.renders) == 1 and len(second) == 10
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    r.set_output_height(16)  # another size: another clip
    _ = [b async for b in r.render(audio)]
    assert len(inner.renders) == 2 and r.frame_size == (16, 16)
    _ = [b async for b in r.render(audio[:-640])]  # other audio
    assert len(inner.renders) == 3
    other = CachedRenderer(inner, cache, CachedRendererOptions(avatar_id="b", renderer_id="r1"))
    _ = [b async for b in other.render(audio)]
    assert len(inner.renders) == 4 and cache.stats.by_kind["clip"] == [1, 4]


async def test_cached_renderer_keys_on_the_render_rate() -> None:
    """A clip drawn at a low rung's rate (repeated frames) is not replayed at full rate."""

    class Following(CountingRenderer):
        render_fps = 25

        def set_render_fps(self, fps: int) -> None:
            self.render_fps = fps

    cache = TieredCache(CacheOptions())
    inner = Following()
    r = CachedRenderer(inner, cache, CachedRendererOptions(avatar_id="a", renderer_id="r1"))
    audio = (np.arange(640 * 10) % 300).astype(np.int16)
    _ = [b async for b in r.render(audio)]
    follower = rate_follower(r)
    assert follower is inner  # the wrapped renderer's own ability
    follower.set_render_fps(10)
    _ = [b async for b in r.render(audio)]
    assert len(inner.renders) == 2
    follower.set_render_fps(25)
    _ = [b async for b in r.render(audio)]
    assert len(inner.renders) == 2  # the full-rate clip again


async def test_cached_renderer_does_not_store_a_clip_whose_size_changed_and_back() -> None:
    """The quality ladder may resize the video mid-reply and back: the clip holds two sizes,
    is not stored (it used to fail the render with numpy's "same shape" error)."""

    class Live(CountingRenderer):
        async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
            self.renders.append(len(audio_16k))
            for _ in range(3):  # each batch at the size of the moment
                yield [np.zeros((self._height, self._height, 3), np.uint8)] * 4

    cache = TieredCache(CacheOptions())
    r = CachedRenderer(Live(), cache, CachedRendererOptions(avatar_id="a", renderer_id="r1"))
    audio = (np.arange(640 * 12) % 300).astype(np.int16)
    shapes = []
    async for batch in r.render(audio):
        shapes.append(batch[0].shape)
        r.set_output_height(16 if len(shapes) == 1 else 32)
    assert shapes == [(32, 32, 3), (16, 16, 3), (32, 32, 3)]
    assert cache.stats.puts == 0


def test_cached_renderer_claims_only_what_the_renderer_it_wraps_can() -> None:
    class Seeking(CountingRenderer):
        def seek(self, step: int) -> None:
            pass

    cache = TieredCache(CacheOptions())
    options = CachedRendererOptions(avatar_id="a", renderer_id="r1")
    plain = CachedRenderer(CountingRenderer(), cache, options)
    assert seeker(plain) is None and rate_follower(plain) is None
    assert not isinstance(plain, Seekable | FrameRateFollower)
    inner = Seeking()
    assert seeker(CachedRenderer(inner, cache, options)) is inner
