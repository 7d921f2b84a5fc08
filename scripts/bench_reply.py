"""Reply-latency benchmark: where the time goes between the end of the caller's speech and the
first reply audio, per voice set and language, the defaults against other setups.

    python scripts/bench_reply.py                            # every voice set, 3 questions each
    python scripts/bench_reply.py --n 2 --sets espeak-en-us-140,kokoro-jf_alpha
    python scripts/bench_reply.py --setups base --bands clean
    python scripts/bench_reply.py --setups llm --first-token-ms 300

Questions are spoken by voices the product does not speak with (``tests/harness/voices.py``:
espeak-ng at two speeds, flite, festival, Kokoro with voice styles and speeds the product does
not use), each also as a telephone-band noisy copy (8 kHz, 300-3400 Hz, 15 dB SNR, mu-law). The
held-out sets (never used to tune the ASR) are reported apart. Setups, each a server started
here with fresh speech and clip caches (no preloading, no speculation), called in turn
question by question so all see the same load:

- ``base``: the embedded defaults (Whisper base multilingual with the short encoder window
  and the call's language as a prior, FAQ retrieval, piper / Kokoro, warp);
- ``tiny.en``: the same with the ASR default before Whisper base, Whisper tiny.en through
  faster-whisper's 30 s path (English sets only);
- ``quiet`` (on request): ``base`` with the end of turn counted from the first quiet frame
  (``media.vad_quiet_db: 30``), early ASR after 120 ms of it, a finished transcript ending
  the turn after 400 ms (docs/asr.md);
- ``llm`` (on request): ``base`` with the dialogue from a fake OpenAI-compatible server in
  this process that waits ``--first-token-ms`` before streaming the knowledge-base answer it
  finds in its prompt, word by word;
- ``warm`` (on request): ``base`` with the product's cache defaults, preloading (greeting,
  fallback and the top FAQ answers in both languages) and speculation on; it is measured
  once its preload is done, as a server that has been up a while.

Each server first takes one unmeasured call per language (its greeting is then cached, as
preloading would have it). A turn is a ``miss`` when its server had not given that reply
before (it is synthesized and rendered), else a ``hit`` (from the caches).

One call per question; the bot plays the WAV and reports when it heard the reply. Per turn,
in ms after the end of the voiced speech (of the clean clip: the bot would count the line
noise of a telephone copy as speech): ``seen`` (the server's end-of-speech event arrives),
``transcript`` (its transcript event arrives), ``dialogue`` (the first reply sentence
arrives), ``tts`` (first TTS audio), ``frame`` (first rendered frame), ``sent`` (first reply
media handed to the track) - those three are server marks placed on the bot's clock through
the transcript event - and ``heard`` (reply audio at the bot); ``skew`` is the bot's lip
offset (ms the mouth moves after the voice; negative: before it). Prints every turn, then
medians and p90 per set, setup and round, with the load average of the shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "inference"))

from fake_openai import FakeOpenAi  # noqa: E402

from signaling.client.bot import BotError, BotOptions, run_bot  # noqa: E402
from signaling.client.bot_audio import voiced_span  # noqa: E402
from tests.harness.spawn import spawn_server  # noqa: E402
from tests.harness.voices import (  # noqa: E402
    VOICES,
    VoiceUnavailable,
    kokoro_code_switched,
    speak,
    telephone,
)

QUESTIONS = {
    "en": [
        "What are your opening hours?",
        "How long does shipping take?",
        "How can I return an item and get a refund?",
        "Which payment methods do you accept?",
        "Where is my order?",
        "Is there a warranty on electronics?",
    ],
    "zh": [
        "你们的营业时间是什么时候？",
        "发货要多久？",
        "我想查一下我的order状态",  # code-switched: the English word in the same voice
        "支持哪些付款方式？",
        "怎么取消订单？",
        "这个商品有质保吗？",
    ],
}
CODE_SWITCHED = {
    "我想查一下我的order状态": [("我想查一下我的", "zh"), ("order", "en"), ("状态", "zh")]
}
SETS = {
    "tuned": [
        "espeak-en-us-140",
        "espeak-en-us-200",
        "flite-slt",
        "festival-kal",
        "kokoro-jf_alpha",
    ],
    "held-out": [
        "festival-slt-hts",
        "flite-rms",
        "kokoro-jf_tebukuro",
        "kokoro-zm_yunjian-1.2",
        "kokoro-zf_xiaoxiao-0.9",
        "kokoro-zm_yunxia-1.1",
    ],
}
COLUMNS = ["seen", "transcript", "dialogue", "tts", "frame", "sent", "heard", "skew"]
QUIET_END = {"media": {"vad_quiet_db": 30, "early_asr_pause_ms": 120, "early_end_ms": 400}}
_ANSWER = re.compile(r"^\s*A: (.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Clip:
    voice: str
    band: str
    language: str
    text: str
    path: Path
    shift_ms: float = 0.0  # the speech's true end minus where the bot sees it end (noise)

    @property
    def set_name(self) -> str:
        return f"{self.voice}/{self.band}"


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.astype("<i2").tobytes())


def _speak(voice: str, text: str) -> np.ndarray:
    parts = CODE_SWITCHED.get(text)
    return kokoro_code_switched(voice, parts) if parts else speak(voice, text)


def make_clips(voices: list[str], bands: list[str], n: int, folder: Path) -> list[Clip]:
    """The questions as WAVs, ``n`` per voice and band (voices that cannot speak: skipped)."""
    clips: list[Clip] = []
    for voice in voices:
        language = VOICES[voice].language
        for k, text in enumerate(QUESTIONS[language][:n]):
            try:
                pcm = _speak(voice, text)
            except VoiceUnavailable as exc:
                print(f"{voice}: skipped ({exc})", file=sys.stderr)
                break
            end = voiced_span(pcm, rate=16000)[1]
            for band in bands:
                path = folder / f"{voice}_{band}_{k}.wav"
                played = telephone(pcm, seed=k) if band == "tel8k" else pcm
                _write_wav(path, played)
                shift = (end - voiced_span(played, rate=16000)[1]) * 1000.0
                clips.append(Clip(voice, band, language, text, path, shift))
    return clips


def llm_reply(messages: list[dict[str, str]]) -> str:
    """The fake LLM's answer: the first knowledge-base answer in its system prompt."""
    found = _ANSWER.search(messages[0]["content"])
    return found.group(1) if found else "Sorry, I can only help with store questions."


def write_config(folder: Path, setup: str, llm_url: str | None) -> Path:
    config: dict[str, Any] = {
        "cache": {"dir": str(folder / "cache"), "preload": False, "speculate": False},
    }
    if setup == "llm":
        config["dialogue"] = {
            "backend": "openai",
            "service": {"base_url": llm_url, "model": "fake", "first_byte_timeout_s": 10},
        }
    if setup == "quiet":
        config.update(QUIET_END)
    if setup == "warm":
        config["cache"] = {"dir": str(folder / "cache")}  # preload and speculation: defaults
    if setup == "tiny.en":
        from inference.asr.whisper import tiny_en_model_dir

        config["asr"] = {
            "model_dir": str(tiny_en_model_dir()),
            "language": "en",
            "short_window": False,
        }
    path = folder / f"{setup}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _arrival(report: dict[str, Any], kind: str, **match: Any) -> float | None:
    """Bot-clock ms of the first event of ``kind`` (with ``match``) after the question."""
    asked = report.get("question_start_ms") or 0.0
    for event in report.get("events", []):
        if event.get("type") != kind or event.get("t_ms", -1) < asked:
            continue
        if all(event.get(k) == v for k, v in match.items()):
            return float(event["t_ms"])
    return None


def breakdown(report: dict[str, Any]) -> dict[str, float]:
    """The turn's stage times in ms after the bot's voiced speech ended (see the docstring)."""
    end = report.get("speech_end_ms")
    if end is None:
        return {}
    out: dict[str, float] = {}
    arrivals = {
        "seen": _arrival(report, "speech", event="ended"),
        "transcript": _arrival(report, "transcript"),
        "dialogue": _arrival(report, "reply_text"),
    }
    for name, t in arrivals.items():
        if t is not None:
            out[name] = t - end
    marks = report.get("timings") or {}  # the question's turn's stage marks
    if "transcript" in out and "asr_done" in marks:
        offset = out["transcript"] - float(marks["asr_done"])
        for name, mark in (
            ("tts", "first_audio"),
            ("frame", "first_frame"),
            ("sent", "first_sent"),
        ):
            if mark in marks:
                out[name] = float(marks[mark]) + offset
    if report.get("reply_audio_latency_ms") is not None:
        out["heard"] = float(report["reply_audio_latency_ms"])
    return out


async def ask(url: str, clip: Clip, report: Path, timeout_s: float) -> dict[str, Any] | None:
    options = BotOptions(
        url=url,
        audio=clip.path,
        report=report,
        language=clip.language,
        timeout_s=timeout_s,
        settle_s=1.0,
    )
    try:
        return (await run_bot(options)).to_json()
    except BotError as exc:
        print(f"{clip.set_name}: call failed: {exc}", file=sys.stderr)
        return None


def _row(
    setup: str, clip: Clip, round_name: str, report: dict[str, Any], times: dict[str, float]
) -> str:
    cells = " ".join(f"{times[c]:6.0f}" if c in times else "     -" for c in COLUMNS)
    heard = str(report.get("transcript") or "")[:34]
    return f"{setup:>7} {clip.set_name:>26} {round_name:>5} {cells}  {heard!r}"


@contextlib.contextmanager
def servers(setups: list[str], out: Path, llm_url: str | None) -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        urls = {}
        for setup in setups:
            folder = out / setup
            folder.mkdir(parents=True, exist_ok=True)
            args = ["--config", str(write_config(folder, setup, llm_url))]
            server = stack.enter_context(
                spawn_server(args=args, log=folder / "server.log", stop_timeout_s=10)
            )
            urls[setup] = server.url
        yield urls


async def run(args: argparse.Namespace, clips: list[Clip], out: Path) -> list[dict[str, Any]]:
    fake = FakeOpenAi(
        reply=llm_reply, first_token_delay_s=args.first_token_ms / 1000, token_delay_s=0.02
    )
    llm_url = await fake.start() if "llm" in args.setups else None
    try:
        with servers(args.setups, out, llm_url) as urls:
            await _warm_up(args, urls, {c.language for c in clips}, out)
            if "warm" in urls:
                await _preloaded(out / "warm" / "server.log", timeout_s=900.0)
            return await _ask_all(args, clips, urls, out)
    finally:
        await fake.close()


def _log_text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""


async def _preloaded(log: Path, *, timeout_s: float) -> None:
    """Wait until the server logging to ``log`` has finished its preload."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        text = await asyncio.to_thread(_log_text, log)
        if "sentences warmed" in text or "preload of avatar" in text:
            print(f"warm: preload done {time.monotonic() - began:.0f} s after the warm-up")
            return
        await asyncio.sleep(1.0)
    print(f"warm: preload not done within {timeout_s:.0f} s; measuring anyway")


async def _warm_up(
    args: argparse.Namespace, urls: dict[str, str], languages: set[str], out: Path
) -> None:
    """One unmeasured call per server and language: the greeting lands in the cache."""
    for language in sorted(languages):
        pcm = (
            speak("espeak-en-us-140", "Hello.")
            if language == "en"
            else speak("kokoro-jf_alpha", "你好。")
        )
        path = out / f"warm_{language}.wav"
        _write_wav(path, pcm)
        clip = Clip("warm-up", "clean", language, "", path)
        for setup, url in urls.items():
            if setup != "tiny.en" or language == "en":
                await ask(url, clip, out / setup / f"warm_{language}.json", args.timeout_s)


def _applies(setup: str, clip: Clip) -> bool:
    return setup != "tiny.en" or clip.language == "en"


async def _ask_all(
    args: argparse.Namespace, clips: list[Clip], urls: dict[str, str], out: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    said: set[tuple[str, str]] = set()  # (setup, reply) already synthesized
    print(f"{'setup':>7} {'voice/band':>26} round " + " ".join(f"{c:>6}" for c in COLUMNS))
    for k, clip in enumerate(clips):
        for setup, url in ((s, u) for s, u in urls.items() if _applies(s, clip)):
            report = await ask(url, clip, out / setup / f"call{k}.json", args.timeout_s)
            if report is None:
                continue
            reply = str(report.get("reply_text") or "")
            round_name = "hit" if (setup, reply) in said else "miss"
            said.add((setup, reply))
            times = {name: t - clip.shift_ms for name, t in breakdown(report).items()}
            if report.get("av_skew_ms") is not None:
                times["skew"] = float(report["av_skew_ms"])
            print(_row(setup, clip, round_name, report, times), flush=True)
            rows.append(
                {
                    "setup": setup,
                    "round": round_name,
                    "voice": clip.voice,
                    "band": clip.band,
                    "language": clip.language,
                    "asked": clip.text,
                    "transcript": report.get("transcript"),
                    "reply": report.get("reply_text"),
                    "times": times,
                    "load1": os.getloadavg()[0],
                }
            )
    return rows


def _cell(values: list[float]) -> str:
    if not values:
        return "      -/-     "
    return f"{np.median(values):6.0f}/{np.percentile(values, 90):<6.0f}"


def summarize(rows: list[dict[str, Any]]) -> None:
    """Median/p90 per set and setup; per language and tuned / held-out group, also split by
    round (cache miss or hit) and by band."""
    held = set(SETS["held-out"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        group = f"ALL {r['language']} {'held-out' if r['voice'] in held else 'tuned'}"
        for key in (
            f"{r['voice']}/{r['band']}",
            group,
            f"{group} {r['round']}",
            f"{group} {r['band']}",
            f"ALL {r['round']}",
        ):
            groups.setdefault((key, r["setup"]), []).append(r)
    print("\nmedian/p90 ms after the end of the caller's speech (n = turns)")
    print(f"{'set':>34} {'setup':>7}  n " + " ".join(f"{c:>13}" for c in COLUMNS))
    for (key, setup), members in sorted(groups.items(), key=_groups_last):
        cells = [_cell([m["times"][c] for m in members if c in m["times"]]) for c in COLUMNS]
        print(f"{key:>34} {setup:>7} {len(members):2d} {' '.join(cells)}")


def _groups_last(item: tuple[tuple[str, str], Any]) -> tuple[bool, str, str]:
    (key, setup), _ = item
    return key.startswith("ALL"), key, setup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n", type=int, default=3, help="questions per voice and band (1..6)")
    p.add_argument("--sets", help="comma-separated voices (default: every voice set)")
    p.add_argument("--bands", default="clean,tel8k", help="clean, tel8k or both")
    p.add_argument("--setups", default="base,tiny.en", help="of base, tiny.en, quiet, llm, warm")
    p.add_argument("--first-token-ms", type=float, default=300.0, help="fake LLM's delay")
    p.add_argument("--timeout-s", type=float, default=40.0, help="per call")
    p.add_argument("--out", type=Path, help="folder for WAVs, configs, reports, summary")
    p.add_argument("--summary-of", type=Path, help="only summarize an earlier turns.json")
    args = p.parse_args(argv)
    if args.summary_of is not None:
        summarize(json.loads(args.summary_of.read_text()))
        return 0
    if not 1 <= args.n <= 6:
        p.error("--n must be within 1..6")
    voices = args.sets.split(",") if args.sets else SETS["tuned"] + SETS["held-out"]
    unknown = [v for v in voices if v not in VOICES]
    if unknown:
        p.error(f"unknown voices {unknown}; known: {', '.join(VOICES)}")
    args.setups = args.setups.split(",")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_reply_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} cores")
    clips = make_clips(voices, args.bands.split(","), args.n, out)
    rows = asyncio.run(run(args, clips, out))
    summarize(rows)
    print(f"load average at end: {os.getloadavg()}; turns and reports in {out}")
    (out / "turns.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
