"""The transcription and speech adapters against the fake server on 127.0.0.1."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from typing import Literal

import numpy as np
import pytest
from fake_openai import FakeOpenAi, Fault

from inference.asr import ASR_BACKENDS, OpenAiAsr, OpenAiAsrOptions, make_asr
from inference.http import HttpTimeouts
from inference.resilience import BreakerOptions, CircuitOpenError, RetryOptions, ServiceUnavailable
from inference.service import ServiceOptions
from inference.tts import TTS_BACKENDS, OpenAiTts, OpenAiTtsOptions, make_tts
from inference.tts.fake import FakeTtsOptions, fake_speech
from inference.tts.openai_http import WavStreamParser
from inference.types import Utterance

FAST = HttpTimeouts(connect_s=1.0, first_byte_s=0.4, read_s=0.4)
RETRY = RetryOptions(attempts=2, base_delay_s=0.01)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAi]:
    fake = FakeOpenAi()
    yield fake
    await fake.close()


def _utterance() -> Utterance:
    samples = (np.sin(np.arange(16000) / 8) * 8000).astype(np.int16)
    return Utterance(samples=samples, start_s=0.0, end_s=1.0)


async def test_asr_transcribes_and_sends_a_wav(server: FakeOpenAi) -> None:
    url = await server.start()
    service = ServiceOptions(base_url=url, model="whisper-x", timeouts=FAST, retry=RETRY)
    asr = make_asr(OpenAiAsrOptions(service=service))
    assert ASR_BACKENDS["openai"].options is OpenAiAsrOptions and isinstance(asr, OpenAiAsr)
    t = await asr.transcribe(_utterance())
    assert t.text == "What are your opening hours?" and t.language == "en"
    _, form = server.requests[0]
    assert form["model"] == "whisper-x" and form["language"] == "en"
    assert form["n"] == 44 + 32000  # a 16-bit mono WAV of the utterance


async def test_asr_retries_then_fails_clearly(server: FakeOpenAi) -> None:
    url = await server.start()
    server.fail("transcriptions", Fault(status=502), Fault(delay_s=1.0))
    asr = OpenAiAsr(
        OpenAiAsrOptions(service=ServiceOptions(base_url=url, timeouts=FAST, retry=RETRY))
    )
    with pytest.raises(ServiceUnavailable, match="first_byte timeout"):
        await asr.transcribe(_utterance())
    server.fail("transcriptions", Fault(status=500))
    assert (await asr.transcribe(_utterance())).text  # one failure, then the retry answers


async def test_asr_breaker_fails_fast(server: FakeOpenAi) -> None:
    url = await server.start()
    server.fail("transcriptions", Fault(status=500))
    asr = OpenAiAsr(
        OpenAiAsrOptions(
            service=ServiceOptions(
                base_url=url,
                retry=RetryOptions(attempts=1),
                breaker=BreakerOptions(failure_threshold=1, reset_after_s=60),
            )
        )
    )
    with pytest.raises(ServiceUnavailable):
        await asr.transcribe(_utterance())
    with pytest.raises(CircuitOpenError):
        await asr.transcribe(_utterance())
    assert len(server.requests) == 1


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
async def test_tts_streams_each_sentence(server: FakeOpenAi, fmt: Literal["wav", "pcm"]) -> None:
    url = await server.start()
    tts = make_tts(
        OpenAiTtsOptions(
            service=ServiceOptions(base_url=url),
            response_format=fmt,
            chunk_ms=100,
            voices=(("zh", "xiaoxiao"),),
        )
    )
    assert TTS_BACKENDS["openai"].options is OpenAiTtsOptions
    chunks = [c async for c in tts.synthesize("Hello there. How are you?", "en")]
    assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
    assert {c.sample_rate for c in chunks} == {24000}
    audio = np.concatenate([c.samples for c in chunks])
    want = np.concatenate(
        [
            fake_speech(s, FakeTtsOptions(sample_rate=24000))
            for s in ("Hello there.", "How are you?")
        ]
    )
    np.testing.assert_array_equal(audio, want)
    assert len(chunks) > 2  # streamed in ~100 ms pieces, not one blob per sentence
    assert [r[1]["input"] for r in server.requests] == ["Hello there.", "How are you?"]
    _ = [c async for c in tts.synthesize("你好。", "zh")]
    assert server.requests[-1][1]["voice"] == "xiaoxiao"


async def test_tts_retries_before_audio_but_not_after(server: FakeOpenAi) -> None:
    url = await server.start()
    service = ServiceOptions(base_url=url, timeouts=FAST, retry=RETRY)
    tts = OpenAiTts(OpenAiTtsOptions(service=service, chunk_ms=50))
    server.fail("speech", Fault(status=500))
    chunks = [c async for c in tts.synthesize("Hello there.")]
    assert sum(len(c.samples) for c in chunks) > 0 and len(server.requests) == 2
    server.fail("speech", Fault(cut_after=8192))  # dies after some audio went out
    with pytest.raises(ServiceUnavailable, match="speech service failed"):
        _ = [c async for c in tts.synthesize("A long sentence to say, with many words in it.")]
    assert len(server.requests) == 3


def test_wav_parser_streamed_header_and_errors() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.array([[100, 300], [-100, -300]] * 10, dtype="<i2").tobytes())
    data = buf.getvalue()
    p = WavStreamParser()
    out = [p.feed(data[i : i + 7]) for i in range(0, len(data), 7)]
    samples = np.concatenate(out)
    assert p.sample_rate == 22050 and list(samples[:2]) == [200, -200] and len(samples) == 20
    with pytest.raises(ConnectionError, match="not a WAV"):
        WavStreamParser().feed(b"ID3\x00" * 4)
