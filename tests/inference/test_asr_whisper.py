"""faster-whisper ASR on the bundled tiny.en model (real model, ~0.3 s per utterance)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from inference.asr import AsrModelError, WhisperAsr, WhisperAsrOptions
from inference.asr.whisper import check_whisper_model_dir, default_whisper_model_dir
from inference.audio import resample_int16
from inference.dialogue import FaqDialogue
from inference.tts import PiperTts, PiperTtsOptions
from inference.types import Utterance


@pytest.fixture(scope="module")
def asr() -> WhisperAsr:
    return WhisperAsr.load(WhisperAsrOptions())


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    return PiperTts.load(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))


def _spoken(piper: PiperTts, text: str) -> Utterance:
    samples = resample_int16(piper.synthesize_blocking(text), piper.sample_rate, 16000)
    return Utterance(samples=samples, start_s=0.0, end_s=len(samples) / 16000)


async def test_piper_speech_round_trips(asr: WhisperAsr, piper: PiperTts) -> None:
    utterance = _spoken(piper, "What are your opening hours?")
    assert 1.0 < utterance.duration_s < 4.0
    transcript = await asr.transcribe(utterance)
    assert "opening hours" in transcript.text.lower()
    assert transcript.language == "en"
    assert 0.3 < transcript.confidence <= 1.0


async def test_spoken_paraphrase_reaches_the_right_faq_entry(
    asr: WhisperAsr, piper: PiperTts
) -> None:
    transcript = await asr.transcribe(_spoken(piper, "How do I reset my password?"))
    found = FaqDialogue.load().match(transcript.text)
    assert found is not None and found[0] == "account_password", transcript


async def test_transcription_does_not_block_the_loop(asr: WhisperAsr, piper: PiperTts) -> None:
    utterance = _spoken(piper, "I would like to return a pair of shoes, please.")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    first, second = await asyncio.gather(asr.transcribe(utterance), asr.transcribe(utterance))
    elapsed = time.perf_counter() - start
    task.cancel()
    assert first == second and "return" in first.text.lower()
    assert ticks >= 0.4 * elapsed / 0.01  # the loop kept running while whisper worked


async def test_too_short_utterance_is_empty(asr: WhisperAsr) -> None:
    tiny = Utterance(samples=np.zeros(800, np.int16), start_s=0.0, end_s=0.05)
    transcript = await asr.transcribe(tiny)
    assert transcript.text == "" and transcript.confidence == 0.0


async def test_wrong_sample_rate_or_dtype_is_rejected(asr: WhisperAsr) -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        await asr.transcribe(
            Utterance(samples=np.zeros(8000, np.int16), start_s=0, end_s=1, sample_rate=8000)
        )
    with pytest.raises(ValueError, match="int16"):
        await asr.transcribe(Utterance(samples=np.zeros(16000), start_s=0, end_s=1))


class _StubModel:
    """Stands in for faster_whisper.WhisperModel to check result handling."""

    def __init__(self, text: str, language: str) -> None:
        self.text, self.language = text, language
        self.kwargs: dict[str, Any] = {}

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
        self.kwargs = kwargs
        segment = SimpleNamespace(text=self.text, tokens=[1, 2, 3], avg_logprob=-0.1)
        return iter([segment]), SimpleNamespace(language=self.language)


async def test_chinese_output_sets_language_zh() -> None:
    model = _StubModel(" 你们几点开门？", "zh")
    asr = WhisperAsr(model, WhisperAsrOptions(language="zh", beam_size=2))
    utterance = Utterance(samples=np.ones(16000, np.int16), start_s=0, end_s=1)
    transcript = await asr.transcribe(utterance)
    assert transcript.text == "你们几点开门？"
    assert transcript.language == "zh"
    assert transcript.confidence == pytest.approx(np.exp(-0.1))
    assert model.kwargs["language"] == "zh" and model.kwargs["beam_size"] == 2
    assert model.kwargs["vad_filter"] is False


def test_bundled_model_folder_is_complete() -> None:
    folder = default_whisper_model_dir()
    assert check_whisper_model_dir(folder) == folder


def test_missing_model_folder_names_path_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(AsrModelError) as info:
        WhisperAsr.load(WhisperAsrOptions(model_dir=missing))
    message = str(info.value)
    assert str(missing) in message
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.*"):
        assert name in message


def test_incomplete_model_folder_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocabulary.txt").write_text("")
    with pytest.raises(AsrModelError, match=r"missing model\.bin, tokenizer\.json"):
        WhisperAsr.load(WhisperAsrOptions(model_dir=tmp_path))
