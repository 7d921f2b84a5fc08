"""Piper TTS with the bundled joe voice (real model; ~50 ms per short sentence)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from inference.tts import PiperTts, PiperTtsOptions, TtsVoiceError, make_tts
from inference.tts.piper_tts import default_piper_voice, resolve_piper_voice
from inference.types import PcmChunk


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    return PiperTts.load(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))


async def _all(tts: PiperTts, text: str) -> list[PcmChunk]:
    return [chunk async for chunk in tts.synthesize(text)]


async def test_one_chunk_per_sentence_last_final(piper: PiperTts) -> None:
    chunks = await _all(piper, "Hello there. Shipping costs $4.99. Anything else?")
    assert [c.final for c in chunks] == [False, False, True]
    assert all(c.sample_rate == 22050 for c in chunks)
    for chunk in chunks:
        assert 0.3 < chunk.duration_s < 4.0
        rms = float(np.sqrt(np.mean(chunk.samples.astype(np.float64) ** 2)))
        assert rms > 500


async def test_noise_zero_is_deterministic(piper: PiperTts) -> None:
    a = await _all(piper, "What are your opening hours?")
    b = await _all(piper, "What are your opening hours?")
    assert len(a) == 1 and a[0].final
    assert np.array_equal(a[0].samples, b[0].samples)


def test_calls_synthesize_at_once_with_the_same_sound(piper: PiperTts) -> None:
    texts = ["What are your opening hours?", "Shipping takes three to five days.", "Hello."]
    alone = [piper.synthesize_blocking(t) for t in texts]
    together: dict[int, np.ndarray] = {}
    go = threading.Barrier(len(texts) * 2)

    def speak(i: int) -> None:
        go.wait()
        together[i] = piper.synthesize_blocking(texts[i % len(texts)])

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(len(texts) * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, samples in together.items():
        assert np.array_equal(samples, alone[i % len(texts)])


def test_one_thread_per_synthesis_by_default() -> None:
    assert PiperTtsOptions().threads == 1
    assert "threads" not in repr(PiperTtsOptions())  # not part of the cache's voice id
    with pytest.raises(ValueError, match="threads"):
        PiperTtsOptions(threads=-1)


async def test_length_scale_slows_speech(piper: PiperTts) -> None:
    slow = PiperTts.load(PiperTtsOptions(noise_scale=0, noise_w_scale=0, length_scale=1.5))
    normal = (await _all(piper, "Thank you for calling."))[0].duration_s
    slower = (await _all(slow, "Thank you for calling."))[0].duration_s
    assert slower > 1.3 * normal


async def test_empty_text_gives_one_empty_final_chunk(piper: PiperTts) -> None:
    chunks = await _all(piper, "   ")
    assert len(chunks) == 1 and chunks[0].final and chunks[0].samples.size == 0


async def test_breaking_out_starts_no_more_synthesis(
    piper: PiperTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = piper.synthesize_blocking

    def counting(text: str) -> np.ndarray:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(piper, "synthesize_blocking", counting)
    stream = piper.synthesize("One. Two. Three. Four.")
    async for _chunk in stream:
        break
    await asyncio.sleep(0.05)
    assert calls == ["One."]
    await stream.aclose()
    assert calls == ["One."]


async def test_cancelling_the_task_starts_no_more_synthesis(
    piper: PiperTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    started = threading.Event()
    real = piper.synthesize_blocking

    def counting(text: str) -> np.ndarray:
        calls.append(text)
        started.set()
        return real(text)

    monkeypatch.setattr(piper, "synthesize_blocking", counting)

    async def consume() -> None:
        async for _chunk in piper.synthesize("One. Two. Three. Four."):
            pass

    task = asyncio.create_task(consume())
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # the running sentence may finish; nothing new may start
    assert calls == ["One."]


def test_voice_folder_and_file_resolve(tmp_path: Path) -> None:
    onnx = default_piper_voice()
    assert resolve_piper_voice(onnx) == (onnx, onnx.with_name(onnx.name + ".json"))
    assert resolve_piper_voice(onnx.parent)[0] == onnx


def test_missing_voice_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TtsVoiceError, match=r"not found: .*nope\.onnx .*\.onnx\.json"):
        make_tts(PiperTtsOptions(voice=tmp_path / "nope.onnx"))
    (tmp_path / "v.onnx").write_bytes(b"")
    with pytest.raises(TtsVoiceError, match=r"config missing: .*v\.onnx\.json"):
        PiperTts.load(PiperTtsOptions(voice=tmp_path / "v.onnx"))
    (tmp_path / "w.onnx").write_bytes(b"")
    with pytest.raises(TtsVoiceError, match=r"exactly one \.onnx"):
        PiperTts.load(PiperTtsOptions(voice=tmp_path))


def test_voice_from_a_copied_folder(tmp_path: Path) -> None:
    onnx = default_piper_voice()
    shutil.copy(onnx.with_name(onnx.name + ".json"), tmp_path)
    (tmp_path / onnx.name).symlink_to(onnx)
    tts = PiperTts.load(PiperTtsOptions(voice=tmp_path))
    assert tts.sample_rate == 22050


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="noise_scale"):
        PiperTtsOptions(noise_scale=-0.1)
    with pytest.raises(ValueError, match="length_scale"):
        PiperTtsOptions(length_scale=0)
