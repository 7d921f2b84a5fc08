"""Fallback from a down remote stage to the embedded one."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import numpy as np
import pytest
from fake_openai import FakeOpenAi, Fault

from inference.asr import OpenAiAsr, OpenAiAsrOptions, ScriptedAsr, ScriptedAsrOptions
from inference.fallback import FallbackAsr, FallbackTts
from inference.resilience import RetryOptions, ServiceUnavailable
from inference.service import ServiceOptions
from inference.tts import FakeTts, FakeTtsOptions
from inference.types import PcmChunk, Utterance


async def test_asr_falls_back_when_the_service_is_down() -> None:
    fake = FakeOpenAi()
    url = await fake.start()
    try:
        fake.fail("transcriptions", Fault(status=500))
        primary = OpenAiAsr(
            OpenAiAsrOptions(service=ServiceOptions(base_url=url, retry=RetryOptions(attempts=1)))
        )
        asr = FallbackAsr(primary, ScriptedAsr(ScriptedAsrOptions(transcripts=("embedded",))))
        utt = Utterance(samples=np.zeros(8000, np.int16), start_s=0.0, end_s=0.5)
        assert (await asr.transcribe(utt)).text == "embedded" and asr.fallbacks == 1
        assert (await asr.transcribe(utt)).text == "What are your opening hours?"
    finally:
        await fake.close()


class BrokenTts:
    def __init__(self, after: int) -> None:
        self.after = after

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        for _ in range(self.after):
            yield PcmChunk(np.ones(10, np.int16), 16000)
        raise ServiceUnavailable("down")


async def test_tts_falls_back_only_before_the_first_chunk() -> None:
    embedded = FakeTts(FakeTtsOptions())
    tts = FallbackTts(BrokenTts(after=0), embedded)
    chunks = [c async for c in tts.synthesize("Hello.")]
    assert chunks[-1].final and embedded.said == [("Hello.", "en")] and tts.fallbacks == 1
    midway = FallbackTts(BrokenTts(after=1), embedded)
    with pytest.raises(ServiceUnavailable):
        _ = [c async for c in midway.synthesize("Hello.")]
    assert len(embedded.said) == 1  # speech already streamed is not said twice
