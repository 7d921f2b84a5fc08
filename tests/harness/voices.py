"""Speech the product did not make, for ASR tests and reply benchmarks.

English from espeak-ng, flite and festival (Debian packages), Mandarin from Kokoro with voice
styles the product does not speak with (Japanese-accented ones, and Mandarin ones other than
the product's default at other speeds); :func:`telephone` makes a
narrow-band noisy copy (8 kHz, 300-3400 Hz, white noise, G.711 mu-law); :func:`with_pause`
speaks a sentence with a hesitation inside it (for end-of-turn tests: the caller is not done
at the pause). Every clip is 16 kHz mono int16 with 0.2 s of silence on each side,
peak-normalised.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "VOICES",
    "Voice",
    "VoiceUnavailable",
    "available",
    "kokoro_code_switched",
    "speak",
    "telephone",
    "with_pause",
]

RATE = 16000
_PAD = np.zeros(RATE // 5, np.float32)


class VoiceUnavailable(RuntimeError):
    """The synthesizer of a voice is not installed."""


@dataclass(frozen=True, slots=True)
class Voice:
    """``name``: e.g. ``espeak-en-us-140``; ``language``: ``"en"`` or ``"zh"``."""

    name: str
    language: str
    engine: str  # espeak | flite | festival | kokoro
    arg: str  # the engine's voice
    rate: float = 1.0  # words per minute (espeak) or speed (kokoro)


VOICES = {
    v.name: v
    for v in (
        Voice("espeak-en-us-140", "en", "espeak", "en-us", 140),
        Voice("espeak-en-us-200", "en", "espeak", "en-us", 200),
        Voice("espeak-en-gb-scotland-170", "en", "espeak", "en-gb-scotland", 170),
        Voice("flite-slt", "en", "flite", "slt"),
        Voice("flite-rms", "en", "flite", "rms"),
        Voice("festival-kal", "en", "festival", "voice_kal_diphone"),
        Voice("festival-slt-hts", "en", "festival", "voice_cmu_us_slt_arctic_hts"),
        Voice("kokoro-jf_alpha", "zh", "kokoro", "jf_alpha", 1.0),
        Voice("kokoro-jf_tebukuro", "zh", "kokoro", "jf_tebukuro", 1.0),
        Voice("kokoro-jf_nezumi", "zh", "kokoro", "jf_nezumi", 1.0),
        Voice("kokoro-zf_xiaobei", "zh", "kokoro", "zf_xiaobei", 1.0),
        Voice("kokoro-zm_yunjian-1.2", "zh", "kokoro", "zm_yunjian", 1.2),
        Voice("kokoro-zf_xiaoxiao-0.9", "zh", "kokoro", "zf_xiaoxiao", 0.9),
        Voice("kokoro-zm_yunxia-1.1", "zh", "kokoro", "zm_yunxia", 1.1),
    )
}


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return np.asarray(samples, np.float32), int(rate)


def _run(cmd: list[str], stdin: str | None = None) -> bytes:
    if shutil.which(cmd[0]) is None:
        raise VoiceUnavailable(f"{cmd[0]} is not installed")
    done = subprocess.run(cmd, input=stdin.encode() if stdin else None, capture_output=True)
    if done.returncode != 0:
        raise VoiceUnavailable(f"{cmd[0]} failed: {done.stderr.decode(errors='replace')[-200:]}")
    return done.stdout


def _via_file(cmd: list[str], stdin: str | None = None) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run([c.replace("{OUT}", str(out)) for c in cmd], stdin)
        return _wav(out.read_bytes())


def _espeak(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    return _wav(_run(["espeak-ng", "-v", voice.arg, "-s", str(int(voice.rate)), "--stdout", text]))


def _flite(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    return _via_file(["flite", "-voice", voice.arg, "-t", text, "-o", "{OUT}"])


def _festival(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    return _via_file(["text2wave", "-eval", f"({voice.arg})", "-o", "{OUT}"], text)


@functools.cache
def _kokoro_view(style: str, speed: float) -> Callable[[str], np.ndarray]:
    try:
        from inference.tts.kokoro_zh import KokoroZhTts, KokoroZhTtsOptions
    except ImportError as exc:
        raise VoiceUnavailable(f"Kokoro Mandarin is not available: {exc}") from exc
    options = KokoroZhTtsOptions(voice=style, speed=speed)
    return KokoroZhTts.load(options).synthesize_blocking


def _kokoro(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    samples = _kokoro_view(voice.arg, voice.rate)(text)
    return samples.astype(np.float32) / 32768.0, 24000


_ENGINES: dict[str, Callable[[Voice, str], tuple[np.ndarray, int]]] = {
    "espeak": _espeak,
    "flite": _flite,
    "festival": _festival,
    "kokoro": _kokoro,
}


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if rate == target:
        return x.astype(np.float32)
    g = int(np.gcd(rate, target))
    return np.asarray(resample_poly(x, target // g, rate // g), np.float32)


def _to_int16(x: np.ndarray) -> np.ndarray:
    x = np.concatenate([_PAD, 0.9 * x / max(1e-6, float(np.abs(x).max())), _PAD])
    return np.asarray(np.rint(np.clip(x, -1.0, 1.0) * 32767.0), np.int16)


def _voice(voice: str | Voice) -> Voice:
    return VOICES[voice] if isinstance(voice, str) else voice


def speak(voice: str | Voice, text: str) -> np.ndarray:
    """``text`` in ``voice`` as 16 kHz int16 (VoiceUnavailable if its engine is missing)."""
    v = _voice(voice)
    samples, rate = _ENGINES[v.engine](v, text)
    return _to_int16(_resample(samples, rate, RATE))


def available(voice: str | Voice) -> bool:
    """Whether ``voice`` can speak here (tries a word)."""
    v = _voice(voice)
    try:
        speak(v, "你好" if v.language == "zh" else "hello")
    except VoiceUnavailable:
        return False
    return True


def _ipa(text: str) -> str:
    return _run(["espeak-ng", "-q", "--ipa", "-v", "en-us", text]).decode().strip()


def kokoro_code_switched(voice: str | Voice, parts: list[tuple[str, str]]) -> np.ndarray:
    """Mandarin with English words in one Kokoro voice: ``parts`` are ``(text, "zh"|"en")``;
    English goes in as espeak-ng's IPA. Reaches into the engine's model (its G2P,
    vocabulary and ``infer``): the public API reads every Latin word letter by letter."""
    v = _voice(voice)
    if v.engine != "kokoro":
        raise ValueError(f"{v.name} is not a Kokoro voice")
    from inference.tts.kokoro_zh import KokoroZhTts, KokoroZhTtsOptions

    tts = KokoroZhTts.load(KokoroZhTtsOptions(voice=v.arg, speed=v.rate))
    model = tts._model
    phonemes = " ".join(model._g2p(text)[0] if lang == "zh" else _ipa(text) for text, lang in parts)
    tokens = [model._vocab[p] for p in phonemes.strip() if p in model._vocab]
    audio = model.infer(tokens, tts._style, v.rate)
    return _to_int16(_resample(audio, 24000, RATE))


def _voiced_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """First and last sample over 1 % of full scale (the clip's own padding excluded)."""
    loud = np.flatnonzero(np.abs(pcm) > 327)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, pcm.size)


def with_pause(
    voice: str,
    head: str,
    tail: str,
    pause_s: float,
    *,
    say: Callable[[str, str], np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """``head``, ``pause_s`` of silence, then ``tail``, in one voice (each part said alone by
    ``say``, default :func:`speak`, its own edges cut): the clip and the second at which the
    ``tail``'s voice begins."""
    if not 0.0 <= pause_s <= 5.0:
        raise ValueError(f"pause_s must be within 0..5, got {pause_s}")
    parts = []
    for text in (head, tail):
        pcm = (say or speak)(voice, text)
        lo, hi = _voiced_bounds(pcm)
        parts.append(pcm[lo:hi])
    gap = np.zeros(round(pause_s * RATE), np.int16)
    pad = np.zeros(_PAD.size, np.int16)
    clip = np.concatenate([pad, parts[0], gap, parts[1], pad])
    return clip, (pad.size + parts[0].size + gap.size) / RATE


def telephone(pcm: np.ndarray, *, snr_db: float = 15.0, seed: int = 0) -> np.ndarray:
    """A telephone-band copy of 16 kHz int16 speech: 8 kHz, 300-3400 Hz, white noise at
    ``snr_db``, mu-law, back to 16 kHz."""
    from scipy.signal import butter, sosfilt

    x = _resample(pcm.astype(np.float32) / 32768.0, RATE, 8000)
    x = np.asarray(sosfilt(butter(4, [300, 3400], btype="band", fs=8000, output="sos"), x))
    power = float(np.mean(x**2)) or 1e-9
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.size)
    x = np.clip(x + noise, -1.0, 1.0)
    mu = 255.0
    q = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    x = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    y = _resample(x.astype(np.float32), 8000, RATE)
    return np.asarray(np.rint(np.clip(y, -1.0, 1.0) * 32767.0), np.int16)
