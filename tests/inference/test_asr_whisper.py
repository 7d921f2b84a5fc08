"""faster-whisper ASR on the bundled Whisper base multilingual model, fed speech the product
did not make (espeak-ng, flite, festival; Kokoro with voices the product does not use)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from inference.asr import AsrModelError, WhisperAsr, WhisperAsrOptions
from inference.asr.whisper import check_whisper_model_dir, tiny_en_model_dir
from inference.dialogue import FaqDialogue
from inference.types import Transcript, Utterance
from inference.work import FairExecutor, FairExecutorOptions, on_background_worker
from tests.harness.voices import (
    Voice,
    VoiceUnavailable,
    kokoro_code_switched,
    speak,
    telephone,
)

ZH_VOICE = "kokoro-jf_nezumi"  # the product speaks Mandarin with zm_yunxi


@pytest.fixture(scope="module")
def asr() -> WhisperAsr:
    return WhisperAsr.load(WhisperAsrOptions())


@pytest.fixture(scope="module")
def faq() -> FaqDialogue:
    return FaqDialogue.load()


def _utt(pcm: np.ndarray, hint: str | None = None) -> Utterance:
    return Utterance(samples=pcm, start_s=0.0, end_s=len(pcm) / 16000, language=hint)


def _said(voice: str | Voice, text: str) -> np.ndarray:
    try:
        return speak(voice, text)
    except VoiceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def zh_clips() -> dict[str, np.ndarray]:
    texts = {"opening_hours": "你们的营业时间是什么时候？", "payment_methods": "支持哪些付款方式？"}
    return {key: _said(ZH_VOICE, text) for key, text in texts.items()}


@pytest.mark.parametrize(
    ("voice", "question", "entry"),
    [
        ("espeak-en-us-140", "What are your opening hours?", "opening_hours"),
        ("flite-slt", "How do I reset my password?", "account_password"),
        ("festival-kal", "Where is my order?", "order_status"),
    ],
)
async def test_english_from_other_voices_reaches_the_right_answer(
    asr: WhisperAsr, faq: FaqDialogue, voice: str, question: str, entry: str
) -> None:
    transcript = await asr.transcribe(_utt(_said(voice, question), "en"))
    assert transcript.language == "en"
    assert 0.3 < transcript.confidence <= 1.0
    found = faq.match(transcript.text, "en")
    assert found is not None and found[0] == entry, transcript


async def test_english_over_a_noisy_telephone_line(asr: WhisperAsr) -> None:
    pcm = telephone(_said("flite-slt", "What are your opening hours?"))
    transcript = await asr.transcribe(_utt(pcm, "en"))
    assert "opening hours" in transcript.text.lower() and transcript.language == "en"


@pytest.mark.parametrize("key", ["opening_hours", "payment_methods"])
async def test_mandarin_comes_out_simplified_and_answerable(
    asr: WhisperAsr, faq: FaqDialogue, zh_clips: dict[str, np.ndarray], key: str
) -> None:
    transcript = await asr.transcribe(_utt(zh_clips[key], "zh"))
    assert transcript.language == "zh"
    assert transcript.text == asr._simplify(transcript.text)  # nothing left to simplify
    found = faq.match(transcript.text, "zh")
    assert found is not None and found[0] == key, transcript


async def test_a_wrong_hint_does_not_lock_the_language(
    asr: WhisperAsr, zh_clips: dict[str, np.ndarray]
) -> None:
    english = _said("espeak-en-us-140", "Which payment methods do you accept?")
    assert (await asr.transcribe(_utt(english, "zh"))).language == "en"
    for pcm in zh_clips.values():
        assert (await asr.transcribe(_utt(pcm, "en"))).language == "zh"


async def test_code_switched_mandarin_is_understood(asr: WhisperAsr, faq: FaqDialogue) -> None:
    try:
        pcm = kokoro_code_switched(
            "kokoro-jf_tebukuro", [("我想查一下我的", "zh"), ("order", "en"), ("状态", "zh")]
        )
    except VoiceUnavailable as exc:
        pytest.skip(str(exc))
    transcript = await asr.transcribe(_utt(pcm, "en"))
    assert transcript.language == "zh"
    found = faq.match(transcript.text, "zh")
    assert found is not None and found[0] == "order_status", transcript


def _tones(seconds: float, seed: int) -> np.ndarray:
    """A melody over a chord: music, not speech."""
    t = np.arange(int(seconds * 16000)) / 16000
    notes = np.repeat([261.6, 329.6, 392.0, 523.3], t.size // 4 + 1)[: t.size]
    chord = sum(np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0)) * 0.2
    music = np.sin(2 * np.pi * notes * t) * np.exp(-3 * (t % 0.5)) + chord
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return np.asarray((music + noise) / np.abs(music).max() * 20000, np.int16)


@pytest.mark.parametrize(
    "sound",
    [
        pytest.param(lambda: np.zeros(48000, np.int16), id="silence"),
        pytest.param(lambda: _tones(3.0, 0), id="music"),
        pytest.param(
            lambda: np.asarray(np.random.default_rng(0).normal(0, 6000, 40000), np.int16),
            id="noise",
        ),
    ],
)
@pytest.mark.parametrize("hint", ["en", "zh"])
async def test_no_speech_gives_nothing_to_answer(
    asr: WhisperAsr, faq: FaqDialogue, sound: Any, hint: str
) -> None:
    transcript = await asr.transcribe(_utt(sound(), hint))
    assert transcript.language in ("en", "zh")
    assert transcript.text == "" or faq.match(transcript.text, transcript.language) is None


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("fr", "Quelles sont vos heures d'ouverture ?"),
        ("es", "¿Dónde está mi paquete?"),
        ("ru", "Когда вы открыты?"),
    ],
)
async def test_a_language_not_allowed_is_heard_unsure_in_an_allowed_one(
    asr: WhisperAsr, voice: str, text: str
) -> None:
    pcm = _said(Voice(f"espeak-{voice}", voice, "espeak", voice, 165), text)
    transcript = await asr.transcribe(_utt(pcm, "en"))
    assert transcript.language in ("en", "zh")
    assert transcript.text == "" or transcript.confidence < 0.5, transcript


async def test_long_speech_takes_the_30_second_path(
    asr: WhisperAsr, monkeypatch: pytest.MonkeyPatch
) -> None:
    questions = ["What are your opening hours?", "How long does shipping take?"] * 6
    pcm = np.concatenate([_said("flite-slt", q) for q in questions])
    assert pcm.size / 16000 > asr.options.max_short_s
    long_path = asr._long
    taken: list[str] = []

    def spy(audio: np.ndarray, expected: str | None) -> Any:
        taken.append("long")
        return long_path(audio, expected)

    monkeypatch.setattr(asr, "_long", spy)
    monkeypatch.setattr(asr, "_short", lambda *a: pytest.fail("took the short window"))
    transcript = await asr.transcribe(_utt(pcm, "en"))
    assert taken == ["long"]
    assert transcript.language == "en" and "shipping" in transcript.text.lower()


async def test_tiny_en_folder_still_works() -> None:
    tiny = WhisperAsr.load(WhisperAsrOptions(model_dir=tiny_en_model_dir()))
    transcript = await tiny.transcribe(_utt(_said("flite-slt", "Where is my order?"), "zh"))
    assert "order" in transcript.text.lower() and transcript.language == "en"


async def test_transcription_does_not_block_the_loop(asr: WhisperAsr) -> None:
    utterance = _utt(_said("flite-slt", "I would like to return a pair of shoes, please."))
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
    tiny = Utterance(samples=np.zeros(800, np.int16), start_s=0.0, end_s=0.05, language="zh")
    transcript = await asr.transcribe(tiny)
    assert transcript == Transcript(text="", language="zh", confidence=0.0)


async def test_wrong_sample_rate_or_dtype_is_rejected(asr: WhisperAsr) -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        await asr.transcribe(
            Utterance(samples=np.zeros(8000, np.int16), start_s=0, end_s=1, sample_rate=8000)
        )
    with pytest.raises(ValueError, match="int16"):
        await asr.transcribe(Utterance(samples=np.zeros(16000), start_s=0, end_s=1))


class _StubModel:
    """Stands in for faster_whisper.WhisperModel on its 30 s path."""

    def __init__(self, text: str, language: str) -> None:
        self.text, self.language = text, language
        self.model = SimpleNamespace(is_multilingual=True)
        self.kwargs: dict[str, Any] = {}

    def detect_language(self, audio: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]:
        return self.language, 0.9, [(self.language, 0.9), ("ja", 0.05)]

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
        self.kwargs = kwargs
        segment = SimpleNamespace(
            text=self.text, tokens=[1, 2, 3], avg_logprob=-0.1, no_speech_prob=0.01
        )
        return iter([segment]), SimpleNamespace(language=self.language)


def _stubbed(text: str, heard: str, **options: Any) -> tuple[WhisperAsr, _StubModel]:
    model = _StubModel(text, heard)
    return WhisperAsr(model, WhisperAsrOptions(short_window=False, **options)), model


@pytest.mark.parametrize(
    ("said", "text", "language"),
    [
        (" 你們幾點開門？", "你们几点开门？", "zh"),  # Traditional → Simplified
        ("我想查一下我的order狀態", "我想查一下我的order状态", "zh"),  # code-switched
        ("Can I pay with 支付寶?", "Can I pay with 支付宝?", "en"),  # English with a name
        ("[Music] ♪", "", "en"),  # not speech: no evidence, the caller's language stays
    ],
)
async def test_text_script_and_language(said: str, text: str, language: str) -> None:
    asr, model = _stubbed(said, "zh", beam_size=2)
    transcript = await asr.transcribe(_utt(np.ones(16000, np.int16), "en"))
    assert (transcript.text, transcript.language) == (text, language)
    assert model.kwargs["language"] == "zh" and model.kwargs["beam_size"] == 2
    assert model.kwargs["vad_filter"] is False


async def test_a_locked_language_is_decoded_whatever_the_audio() -> None:
    asr, model = _stubbed("Hello there.", "en", language="zh")
    await asr.transcribe(_utt(np.ones(16000, np.int16), "en"))
    assert model.kwargs["language"] == "zh"


def test_tiny_en_folder_is_complete() -> None:
    folder = tiny_en_model_dir()
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


class _SlowStub(_StubModel):
    """Counts the transcriptions running at once, by kind of worker."""

    def __init__(self) -> None:
        super().__init__("Hello.", "en")
        self.lock = threading.Lock()
        self.running = {True: 0, False: 0}
        self.most = {True: 0, False: 0}
        self.foreground_beside_background = False

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
        kind = on_background_worker()
        with self.lock:
            self.running[kind] += 1
            self.most[kind] = max(self.most[kind], self.running[kind])
            if not kind and self.running[True]:
                self.foreground_beside_background = True
        time.sleep(0.15)
        with self.lock:
            self.running[kind] -= 1
        return super().transcribe(audio, **kwargs)


async def test_background_work_leaves_a_transcription_worker_free() -> None:
    model = _SlowStub()
    asr = WhisperAsr(model, WhisperAsrOptions(short_window=False, num_workers=2))
    executor = FairExecutor(FairExecutorOptions(workers=2, background_workers=3))
    guesses = [executor.lane(f"{c}/speculation", background=True) for c in "abc"]
    call = executor.lane("d")
    utt = _utt(np.ones(16000, np.int16), "en")
    background = [lane.create_task(asr.transcribe(utt)) for lane in guesses]
    await asyncio.sleep(0.05)
    heard = await call.create_task(asr.transcribe(utt))
    await asyncio.gather(*background)
    assert heard.text == "Hello."
    assert model.most[True] == 1  # num_workers - 1 at most, though three workers were free
    assert model.foreground_beside_background  # the call did not queue behind them
    executor.shutdown()


async def test_one_call_transcribes_one_utterance_at_a_time() -> None:
    model = _SlowStub()
    asr = WhisperAsr(model, WhisperAsrOptions(short_window=False, num_workers=2))
    executor = FairExecutor(FairExecutorOptions(workers=4))
    noisy, quiet = executor.lane("noisy"), executor.lane("quiet")
    utt = _utt(np.ones(16000, np.int16), "en")
    # an early transcription given up on still runs: the call's next one waits for it
    given_up = noisy.create_task(asr.transcribe(utt))
    await asyncio.sleep(0.02)
    given_up.cancel()
    began = time.monotonic()
    await noisy.create_task(asr.transcribe(utt))
    assert time.monotonic() - began >= 0.25  # after the first (0.15 s), then its own
    assert model.most[False] == 1
    # two calls transcribe at once
    await asyncio.gather(*(lane.create_task(asr.transcribe(utt)) for lane in (noisy, quiet)))
    assert model.most[False] == 2
    executor.shutdown()
