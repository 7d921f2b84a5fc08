"""Whisper decoding over a window fitted to the utterance, on CTranslate2 directly.

faster-whisper pads every utterance to Whisper's 30 s window and, asked to find the language,
encodes it twice. Here the encoder sees the utterance rounded up to whole seconds (at least
``min_window_s``), once: the language is read from that encoding and weighed with the one the
call expects (:func:`pick_language`: a prior, never a lock, among the allowed languages),
then greedy decoding runs on the same encoding. A short window sometimes makes the decoder say
the utterance again instead of ending: :func:`cut_repeats` drops the repeats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_WINDOW_S",
    "Decoded",
    "cut_repeats",
    "decode_short",
    "encode_window",
    "language_probs",
    "pick_language",
    "window_frames",
]

SAMPLE_RATE = 16000
MAX_WINDOW_S = 30.0  # Whisper's own window: longer audio takes faster-whisper's path
_HOP = 160  # samples per mel frame
_MAX_TOKENS = 448
_CLAUSE = re.compile(r"[^.?!。？！,，;；]+[.?!。？！,，;；]*")  # a clause and its marks
_NOT_WORD = re.compile(r"[\W_]+")
_RUN = re.compile(r"(.+?)\1{2,}", re.DOTALL)  # a unit and two or more copies right after it
_LETTER = re.compile(r"[^\W\d_]")
_MIN_REPEAT = 8  # weight of a repeat worth cutting: a CJK character counts 2, others 1


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoding: text as the model wrote it, its language, scores."""

    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float


def window_frames(n_samples: int, min_window_s: float) -> int:
    """Mel frames the encoder sees: the audio rounded up to whole seconds, at least
    ``min_window_s``, at most 30 s; even (the encoder halves them)."""
    seconds = max(n_samples / SAMPLE_RATE, min_window_s)
    frames = math.ceil(seconds) * SAMPLE_RATE // _HOP
    return min(int(MAX_WINDOW_S * SAMPLE_RATE / _HOP), frames + frames % 2)


def encode_window(model: Any, audio: np.ndarray, min_window_s: float) -> Any:
    """Encoder output of ``audio`` (float32, 16 kHz) zero-padded to its window.

    ``model`` is a ``faster_whisper.WhisperModel``."""
    import ctranslate2

    frames = window_frames(audio.size, min_window_s)
    padded = np.zeros(frames * _HOP, np.float32)
    n = min(audio.size, padded.size)
    padded[:n] = audio[:n]
    features = model.feature_extractor(padded)[:, :frames]
    batch = np.ascontiguousarray(features[None], dtype=np.float32)
    return model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)


def language_probs(model: Any, encoded: Any) -> dict[str, float]:
    """Probability of each language (``"en"``, ``"zh"``, ...) given an encoding."""
    ranked = model.model.detect_language(encoded)[0]
    return {token[2:-2]: float(p) for token, p in ranked}


def pick_language(
    probs: Mapping[str, float], *, allowed: Sequence[str], expected: str | None, weight: float
) -> str:
    """The allowed language most likely given the audio (``probs``) and the expectation: the
    expected language has prior ``weight``, the others share the rest."""
    if expected not in allowed or len(allowed) == 1:
        return max(allowed, key=lambda lang: probs.get(lang, 0.0))
    others = (1.0 - weight) / (len(allowed) - 1)

    def score(lang: str) -> float:
        return probs.get(lang, 0.0) * (weight if lang == expected else others)

    return max(allowed, key=score)


def decode_short(
    model: Any,
    encoded: Any,
    *,
    language: str,
    audio_s: float,
    prompt: str | None = None,
) -> Decoded:
    """Greedy decoding (no timestamps, no temperature fallback) of one encoded window."""
    from faster_whisper.tokenizer import Tokenizer

    multilingual = bool(model.model.is_multilingual)
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        multilingual,
        task="transcribe",
        language=language if multilingual else "en",
    )
    ids = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    if prompt:
        ids = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt.strip())[-200:], *ids]
    result = model.model.generate(
        encoded,
        [ids],
        beam_size=1,
        max_length=min(_MAX_TOKENS, 16 + int(15 * audio_s)),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=[-1],
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    cum_logprob = result.scores[0] * len(tokens)  # length_penalty 1: the score is normalised
    return Decoded(
        text=tokenizer.decode(tokens).strip(),
        language=language if multilingual else "en",
        avg_logprob=cum_logprob / (len(tokens) + 1),
        no_speech_prob=float(result.no_speech_prob),
    )


def _key(text: str) -> str:
    return _NOT_WORD.sub("", text.lower())


def _long_enough(key: str) -> bool:
    """Four CJK characters or eight letters: shorter repeats ("no, no") are speech."""
    return sum(2 if _is_cjk(ch) else 1 for ch in key) >= _MIN_REPEAT


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _cut_sentences(text: str) -> str:
    """Stop before the first clause that repeats (or begins) an earlier one."""
    seen: list[str] = []
    for clause in _CLAUSE.finditer(text):
        key = _key(clause.group(0))
        if _long_enough(key) and any(s == key or s.startswith(key) for s in seen):
            return text[: clause.start()].rstrip()
        seen.append(key)
    return text


def _cut_loop(text: str) -> str:
    """``XX...`` (the head said again right after itself, unpunctuated) becomes ``X``."""
    for period in range(2, len(text) // 2 + 1):
        head = text[:period].rstrip()
        if _long_enough(_key(head)) and text[period:].lstrip().startswith(head):
            return head
    return text


def _cut_runs(text: str) -> str:
    """Stop after the first unit said three times in a row (four for one character)."""
    for run in _RUN.finditer(text):
        unit = run.group(1)
        if not _LETTER.search(unit) or (len(unit) == 1 and len(run.group(0)) < 4):
            continue  # "1000", "..." and "no no" are not runaways
        return text[: run.start() + len(unit)].rstrip(" ,，、")
    return text


def cut_repeats(text: str) -> str:
    """``text`` without the repeats of a decoder that kept going past the utterance's end."""
    return _cut_runs(_cut_loop(_cut_sentences(text.strip())))
