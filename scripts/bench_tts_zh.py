"""Mandarin TTS intelligibility and speed: round-trip CER of every Chinese FAQ answer.

    python scripts/bench_tts_zh.py                       # Kokoro voices and espeak-ng baselines
    python scripts/bench_tts_zh.py --engines kokoro:jm_kumo:0.9 espeak:cmn -v
    python scripts/bench_tts_zh.py --tiny                # two answers, one voice: a smoke test

Each text (the greeting, the fallback line and every entry's Chinese answer of the bundled
knowledge base) is spoken by the engine through its ``Tts`` stream, resampled to 16 kHz and
recognised by the product's ASR (``WhisperAsr``: Whisper base multilingual, language locked
to Mandarin). Both texts are brought to Simplified characters (OpenCC t2s) with digits as
Chinese numerals and without punctuation; CER = character edit distance / reference length,
over all texts. Also per engine: RTF (synthesis wall time / audio time), CPU seconds of this
process per audio second (moved less by other load on the machine), and the time from
asking to the first audio chunk (median and p90 over the texts).

Engines: ``kokoro:VOICE[:SPEED]`` (:mod:`inference.tts.kokoro_zh`), ``espeak:VOICE``
(``espeak:cmn`` reads characters; ``espeak:cmn-latn-pinyin`` is given tone-numbered pinyin).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.asr.whisper import WhisperAsr, WhisperAsrOptions  # noqa: E402
from inference.audio import resample_int16  # noqa: E402
from inference.dialogue.knowledge_base import load_knowledge_base  # noqa: E402
from inference.tts import (  # noqa: E402
    EspeakTts,
    EspeakTtsOptions,
    KokoroZhTts,
    KokoroZhTtsOptions,
    Tts,
)
from inference.types import Utterance  # noqa: E402

DEFAULT_ENGINES = (
    "kokoro:zm_yunxi",
    "kokoro:zf_xiaoyi",
    "kokoro:jm_kumo",
    "espeak:cmn",
    "espeak:cmn-latn-pinyin",
)
_ASR_RATE = 16000
_PINYIN_MARKS = {"，": ",", "。": ".", "？": "?", "！": "!", "、": ",", "：": ":", "；": ";"}


@dataclass(frozen=True, slots=True)
class Row:
    """One engine's numbers over all texts."""

    engine: str
    cer: float
    chars: int
    rtf: float
    cpu_per_audio_s: float
    first_audio_median_s: float
    first_audio_p90_s: float
    audio_s: float


@dataclass(frozen=True, slots=True)
class Spoken:
    """One text through one engine and the ASR."""

    text: str
    heard: str
    errors: int
    chars: int
    audio_s: float
    synth_s: float
    cpu_s: float
    first_audio_s: float


def faq_texts_zh() -> list[str]:
    """The greeting, the fallback line and every entry's Chinese answer."""
    kb = load_knowledge_base()
    return [kb.greeting["zh"], kb.fallback["zh"], *(e.answer("zh") for e in kb.entries)]


def _simplifier() -> Callable[[str], str]:
    import opencc

    return opencc.OpenCC("t2s").convert  # type: ignore[no-any-return]


def normalise(text: str, simplify: Callable[[str], str]) -> str:
    """Simplified characters, digits as Chinese numerals, letters and digits only."""
    import cn2an

    text = simplify(unicodedata.normalize("NFKC", text))
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: str(cn2an.an2cn(m.group(0))), text)
    text = text.replace("%", "百分之")
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN").lower()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings, by characters."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def to_pinyin(text: str) -> str:
    """Hanzi as tone-numbered pinyin syllables (neutral tone 5), punctuation in ASCII."""
    import cn2an
    from pypinyin import Style, lazy_pinyin

    text = cn2an.transform(text, "an2cn")
    words = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    joined = " ".join(_PINYIN_MARKS.get(w.strip(), w.strip()) for w in words if w.strip())
    return re.sub(r"\s+([,.?!:;])", r"\1", joined)


def make_engine(spec: str, threads: int) -> tuple[Tts, Callable[[str], str]]:
    """The engine a spec names and how it wants its text."""
    kind, _, rest = spec.partition(":")
    if kind == "kokoro":
        voice, _, speed = rest.partition(":")
        options = KokoroZhTtsOptions(
            voice=voice or "zm_yunxi", speed=float(speed or 1.0), threads=threads
        )
        return KokoroZhTts.load(options), str
    if kind == "espeak":
        voice = rest or "cmn"
        tts = EspeakTts(EspeakTtsOptions(voice=voice))
        return tts, to_pinyin if "pinyin" in voice else str
    raise SystemExit(f"unknown engine {spec!r}: kokoro:VOICE[:SPEED] or espeak:VOICE")


async def speak(tts: Tts, text: str) -> tuple[np.ndarray, float, float, float]:
    """(16 kHz samples, synthesis wall s, CPU s, s to the first audio chunk)."""
    parts: list[np.ndarray] = []
    first = 0.0
    began, cpu0 = time.perf_counter(), time.process_time()
    async for chunk in tts.synthesize(text, "zh"):
        if chunk.samples.size and not parts:
            first = time.perf_counter() - began
        parts.append(resample_int16(chunk.samples, chunk.sample_rate, _ASR_RATE))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
    return np.concatenate(parts), wall, cpu, first


async def run_engine(
    spec: str, texts: list[str], asr: WhisperAsr, threads: int, verbose: bool
) -> Row:
    tts, prepare = make_engine(spec, threads)
    await speak(tts, prepare("您好。"))  # warm-up
    simplify = _simplifier()
    spoken: list[Spoken] = []
    for text in texts:
        audio, wall, cpu, first = await speak(tts, prepare(text))
        heard = asr.transcribe_blocking(
            Utterance(audio, 0.0, audio.size / _ASR_RATE, language="zh")
        )
        ref, hyp = normalise(text, simplify), normalise(heard.text, simplify)
        errors = edit_distance(ref, hyp)
        spoken.append(
            Spoken(text, heard.text, errors, len(ref), audio.size / _ASR_RATE, wall, cpu, first)
        )
        if verbose:
            print(f"  {errors / max(len(ref), 1):5.1%}  {text}\n         {heard.text}", flush=True)
    return _row(spec, spoken)


def _row(spec: str, spoken: list[Spoken]) -> Row:
    audio = sum(s.audio_s for s in spoken)
    firsts = sorted(s.first_audio_s for s in spoken)
    return Row(
        engine=spec,
        cer=sum(s.errors for s in spoken) / max(sum(s.chars for s in spoken), 1),
        chars=sum(s.chars for s in spoken),
        rtf=sum(s.synth_s for s in spoken) / audio,
        cpu_per_audio_s=sum(s.cpu_s for s in spoken) / audio,
        first_audio_median_s=statistics.median(firsts),
        first_audio_p90_s=firsts[min(len(firsts) - 1, round(0.9 * (len(firsts) - 1)))],
        audio_s=audio,
    )


def print_table(rows: list[Row]) -> None:
    print("| engine | CER | chars | RTF | CPU s / audio s | first audio median / p90 | audio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.engine} | {r.cer:.1%} | {r.chars} | {r.rtf:.2f} | {r.cpu_per_audio_s:.2f} "
            f"| {r.first_audio_median_s:.2f} s / {r.first_audio_p90_s:.2f} s | {r.audio_s:.0f} s |"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=list(DEFAULT_ENGINES), metavar="SPEC")
    parser.add_argument("--tiny", action="store_true", help="two texts, kokoro:zm_yunxi only")
    parser.add_argument("--threads", type=int, default=2, help="Kokoro onnxruntime threads")
    parser.add_argument("--asr-threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every transcript")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> list[Row]:
    texts = faq_texts_zh()
    engines = args.engines
    if args.tiny:
        texts, engines = texts[:2], ["kokoro:zm_yunxi"]
    asr = WhisperAsr.load(WhisperAsrOptions(language="zh", cpu_threads=args.asr_threads))
    rows = []
    for spec in engines:
        print(f"{spec}: {len(texts)} texts", file=sys.stderr, flush=True)
        rows.append(await run_engine(spec, texts, asr, args.threads, args.verbose))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = asyncio.run(_main(args))
    print_table(rows)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
