"""espeak-ng TTS (Mandarin) and the WAV parser."""

from __future__ import annotations

import asyncio
import io
import struct
import wave

import numpy as np
import pytest

from inference.tts import EspeakNotFoundError, EspeakTts, EspeakTtsOptions
from inference.tts.espeak import parse_wav
from inference.types import PcmChunk


async def _all(tts: EspeakTts, text: str, language: str = "zh") -> list[PcmChunk]:
    return [c async for c in tts.synthesize(text, language)]


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


async def test_mandarin_is_spoken_sentence_by_sentence() -> None:
    chunks = await _all(EspeakTts(), "您好，欢迎致电北风好物。请问有什么可以帮您？")
    assert [c.final for c in chunks] == [False, True]
    for chunk in chunks:
        assert chunk.sample_rate == 22050
        assert 1.0 < chunk.duration_s < 8.0
        assert _rms(chunk.samples) > 500


async def test_faster_speech_is_shorter() -> None:
    text = "我们的营业时间是早上八点到晚上八点。"
    slow = (await _all(EspeakTts(EspeakTtsOptions(speed_wpm=120)), text))[0].duration_s
    fast = (await _all(EspeakTts(EspeakTtsOptions(speed_wpm=300)), text))[0].duration_s
    assert fast < 0.7 * slow


async def test_other_voices_work() -> None:
    chunks = await _all(EspeakTts(EspeakTtsOptions(voice="en-us")), "Hello there.", "en")
    assert len(chunks) == 1 and _rms(chunks[0].samples) > 500


async def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"espeak-ng failed .*nosuchvoice"):
        await _all(EspeakTts(EspeakTtsOptions(voice="nosuchvoice")), "你好。")


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(EspeakNotFoundError, match="not found on PATH"):
        EspeakTts(EspeakTtsOptions(binary="espeak-ng-not-installed"))


async def test_cancel_stops_after_the_current_sentence() -> None:
    tts = EspeakTts()
    got: list[PcmChunk] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in tts.synthesize("第一句。第二句。第三句。第四句。"):
            got.append(chunk)
            first.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 1 and not got[0].final


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="speed_wpm"):
        EspeakTtsOptions(speed_wpm=10)
    with pytest.raises(ValueError, match="voice"):
        EspeakTtsOptions(voice="cmn; rm -rf /")


def test_parse_wav_of_a_proper_file() -> None:
    samples = (np.sin(np.arange(1000) / 5) * 10000).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    parsed, rate = parse_wav(buf.getvalue())
    assert rate == 16000 and np.array_equal(parsed, samples)


def test_parse_wav_with_streaming_placeholder_sizes() -> None:
    samples = np.arange(-50, 50, dtype=np.int16)
    header = (
        b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
        + b"data" + struct.pack("<I", 0x7FFFF000)
    )  # fmt: skip
    parsed, rate = parse_wav(header + samples.tobytes())
    assert rate == 22050 and np.array_equal(parsed, samples)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"nope", "RIFF"),
        (b"RIFF\0\0\0\0WAVE", "no data chunk"),
        (
            b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, 8000, 32000, 4, 16),
            "mono 16-bit",
        ),
        (b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0", "before its fmt"),
    ],
)
def test_parse_wav_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_wav(data)
