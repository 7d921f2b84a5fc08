"""End-of-turn benchmark: how soon the caller's turn ends after their last word, and how often
it ends at a pause inside a sentence (a false cut), for end-of-turn settings side by side.

    python scripts/bench_turn_end.py                          # previous and current defaults
    python scripts/bench_turn_end.py --configs 160/300/0,100/200 --group tuned
    python scripts/bench_turn_end.py --threads 2 --pauses 0.3,0.4

A setting ``P/E/Q`` is the early-ASR pause (ms of silence that starts a transcription), the
adaptive end (ms of silence after which a confident, finished early transcript ends the turn)
and the segmenter's ``quiet_db`` (a frame that far under the loudest counts as silent for
those two; 0: webrtcvad alone; default 30); the segmenter's own end (500 ms) stays. Each
clip goes frame by frame through the call's ``media.vad.Segmenter`` and
``signaling.call.early_asr.EarlyAsr`` with the real recogniser (Whisper base, the call's
language as the hint). Time runs at real speed while a transcription is under way (its
latency is this machine's, under its load) and skips ahead otherwise; with ``--asr-ms`` every
transcription takes that long on the clip's time instead (a machine of known speed).

Clips (``tests/harness/voices.py``, voices the product does not speak with; ``--group``
picks the tuned-on or the held-out ones): the reply benchmark's questions, clean and as
telephone copies, for the end delay (the turn's end after the clean clip's last voiced 20 ms,
as ``scripts/bench_reply.py`` counts it); and sentences with a hesitation inside them
(``with_pause``) for the false cuts: the turn ended before the second half was spoken.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.asr.base import Asr  # noqa: E402
from inference.asr.call import CallAsr  # noqa: E402
from inference.types import Transcript, Utterance  # noqa: E402
from media.vad import Segmenter, SegmenterOptions, SpeechDropped, UtteranceReady  # noqa: E402
from signaling.call.early_asr import EarlyAsr, EarlyAsrOptions  # noqa: E402
from signaling.client.bot_audio import voiced_span  # noqa: E402
from tests.harness.voices import VOICES, VoiceUnavailable, speak, telephone, with_pause  # noqa: E402

QUESTIONS = {
    "en": [
        "What are your opening hours?",
        "How long does shipping take?",
        "How can I return an item and get a refund?",
        "Which payment methods do you accept?",
    ],
    "zh": ["你们的营业时间是什么时候？", "发货要多久？", "支持哪些付款方式？", "怎么取消订单？"],
}
PAUSED = {  # a caller who hesitates mid-sentence: (head, tail)
    "en": [
        ("I would like to know", "your opening hours on Sunday."),
        ("Can I return", "an item that I bought last week?"),
        ("My order number is", "four five six seven."),
        ("How long does shipping take", "to Canada?"),
    ],
    "zh": [
        ("我想问一下", "你们周末几点开门？"),
        ("如果我想退货", "需要怎么办？"),
        ("我的订单", "什么时候能到？"),
        ("请问", "可以用支付宝付款吗？"),
    ],
}
GROUPS = {
    "tuned": ["espeak-en-us-140", "flite-slt", "festival-kal", "kokoro-jf_alpha"],
    "held-out": ["festival-slt-hts", "flite-rms", "kokoro-jf_tebukuro"],
}
_FRAME = 320
_TAIL_S = 1.0  # silence after each clip: the segmenter ends the turn within it


@dataclass(frozen=True, slots=True)
class Clip:
    voice: str
    language: str
    kind: str  # "question" | "pause"
    pcm: np.ndarray
    voice_end_s: float  # the last voiced 20 ms ends here (of the clean clip)
    resume_s: float | None = None  # a paused clip: the second half's voice begins here


class FixedLatencyAsr:
    """The recogniser as if each transcription took ``latency_s`` of the clip's time: the
    clip's time stands still while the real one runs, and its result comes ``latency_s``
    after it began (a machine of known speed, whatever this one's load)."""

    def __init__(self, asr: Asr, latency_s: float) -> None:
        self._asr = asr
        self.latency_s = latency_s
        self.now = 0.0  # the clip's time
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []

    async def transcribe(self, utterance: Utterance) -> Transcript:
        due = self.now + self.latency_s
        self._running += 1
        self._idle.clear()
        try:
            result = await self._asr.transcribe(utterance)
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
        if self.now < due - 1e-9:
            wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append((due, wake))
            await wake
        return result

    async def advance(self, now: float) -> None:
        """Move the clip's time to ``now`` once the real transcriptions under way have
        ended; the ones due by then finish."""
        await asyncio.sleep(0)  # one just spawned gets to start
        await self._idle.wait()
        self.now = now
        due = [w for w in self._waiting if w[0] <= now + 1e-9]
        for item in due:
            self._waiting.remove(item)
            if not item[1].done():  # not dropped (cancelled) meanwhile
                item[1].set_result(None)
        for _ in range(3):  # the woken transcriptions return through their callers
            await asyncio.sleep(0)


class TimedAsr:
    """The recogniser, its latencies recorded (seconds per transcription)."""

    def __init__(self, asr: Asr) -> None:
        self._asr = asr
        self.seconds: list[float] = []

    async def transcribe(self, utterance: Utterance) -> Transcript:
        began = time.perf_counter()
        try:
            return await self._asr.transcribe(utterance)
        finally:
            self.seconds.append(time.perf_counter() - began)


async def turn_end(
    asr: Asr, clip: Clip, segmenter: SegmenterOptions, early_options: EarlyAsrOptions
) -> tuple[float, float] | None:
    """Clip seconds at which the caller's turn ends, and at which its transcript is ready (the
    early one, awaited, or a transcription of the utterance); None: dropped as too short."""
    seg = Segmenter(segmenter)
    fixed = asr if isinstance(asr, FixedLatencyAsr) else None
    call_asr = CallAsr(asr, language=clip.language)
    early = EarlyAsr(call_asr, options=early_options)
    loop = asyncio.get_running_loop()
    pcm = np.concatenate([clip.pcm, np.zeros(round(_TAIL_S * 16000), np.int16)])
    offset = loop.time()
    try:
        for i in range(pcm.size // _FRAME):
            now = (i + 1) * _FRAME / 16000
            if fixed is not None:
                await fixed.advance(now)
            elif early.pending:  # a transcription runs: the clip plays in real time
                await asyncio.sleep(max(0.0, offset + now - loop.time()))
            else:  # nothing depends on the wall clock: skip ahead
                offset = loop.time() - now
                await asyncio.sleep(0)
            events = seg.push(pcm[i * _FRAME : (i + 1) * _FRAME], now)
            early.observe(
                speaking=seg.speaking,
                voiced=seg.voiced_frames,
                trailing=seg.trailing_silence_frames,
                speech=seg.current_speech,
                now=now,
            )
            if early.turn_over(speaking=seg.speaking, trailing=seg.trailing_silence_frames):
                events = [*events, *seg.end_now(now)]
            for event in events:
                if isinstance(event, UtteranceReady) and event.complete:
                    return now, await _ready(loop, early, call_asr, event, now, fixed)
                if isinstance(event, SpeechDropped):
                    return None
        return None
    finally:
        await early.close()


async def _ready(
    loop: asyncio.AbstractEventLoop,
    early: EarlyAsr,
    asr: CallAsr,
    event: UtteranceReady,
    now: float,
    fixed: FixedLatencyAsr | None,
) -> float:
    """Clip seconds at which the turn's transcript is ready: the early one, or the
    utterance's own transcription when there is none."""
    ended = loop.time()
    task = early.take()
    if task is None:
        task = asyncio.ensure_future(asr.transcribe(Utterance(event.samples, 0.0, 1.0)))
    if fixed is None:
        await task
        return now + loop.time() - ended
    while not task.done():
        now += 0.01
        await fixed.advance(now)
    return now


def _speaker(cache: Path | None) -> Callable[[str, str], np.ndarray]:
    """``speak``, its clips kept in ``cache`` (a folder) when one is given."""
    if cache is None:
        return speak
    cache.mkdir(parents=True, exist_ok=True)

    def cached(voice: str, text: str) -> np.ndarray:
        path = cache / (hashlib.sha256(f"{voice}|{text}".encode()).hexdigest()[:24] + ".npy")
        if path.exists():
            return np.asarray(np.load(path), np.int16)
        pcm = speak(voice, text)
        np.save(path, pcm)
        return pcm

    return cached


def make_clips(
    voices: list[str], pauses: list[float], n: int, cache: Path | None = None
) -> list[Clip]:
    clips: list[Clip] = []
    say = _speaker(cache)
    for voice in voices:
        language = VOICES[voice].language
        try:
            for k, text in enumerate(QUESTIONS[language][:n]):
                pcm = say(voice, text)
                end = voiced_span(pcm, rate=16000)[1]
                clips.append(Clip(voice, language, "question", pcm, end))
                clips.append(Clip(voice, language, "question", telephone(pcm, seed=k), end))
            for head, tail in PAUSED[language][:n]:
                for pause in pauses:
                    pcm, resume = with_pause(voice, head, tail, pause, say=say)
                    end = voiced_span(pcm, rate=16000)[1]
                    clips.append(Clip(voice, language, "pause", pcm, end, resume))
        except VoiceUnavailable as exc:
            print(f"{voice}: skipped ({exc})", file=sys.stderr)
    return clips


def _cut_short(clip: Clip, ends: tuple[float, float] | None) -> bool:
    """The turn ended at the pause inside the sentence."""
    return clip.resume_s is not None and ends is not None and ends[0] < clip.resume_s


def _cell(values: list[float]) -> str:
    if not values:
        return "      -/-     "
    return f"{np.median(values):6.0f}/{np.percentile(values, 90):<6.0f}"


def _setting(text: str, end_silence_ms: int) -> tuple[SegmenterOptions, EarlyAsrOptions]:
    pause, end, *quiet = (int(x) for x in text.split("/"))
    segmenter = SegmenterOptions(end_silence_ms=end_silence_ms, quiet_db=quiet[0] if quiet else 30)
    return segmenter, EarlyAsrOptions(pause_ms=pause, end_after_ms=end)


async def run(args: argparse.Namespace, clips: list[Clip]) -> None:
    from inference.asr.whisper import WhisperAsr, WhisperAsrOptions

    timed = TimedAsr(WhisperAsr.load(WhisperAsrOptions(cpu_threads=args.threads)))
    asr: TimedAsr | FixedLatencyAsr = timed
    if args.asr_ms:
        asr = FixedLatencyAsr(timed, args.asr_ms / 1000.0)
    print("ms after the voice ended, median/p90: the turn's end, its transcript ready")
    print(f"{'setting':>9} {'':>3} {'clips':>8}  n {'end':>13} {'transcript':>13} {'cuts':>6}")
    for text in args.configs.split(","):
        segmenter, options = _setting(text, args.end_silence_ms)
        timed.seconds.clear()
        results: dict[tuple[str, str], list[tuple[Clip, tuple[float, float] | None]]] = {}
        for clip in clips:
            times = await turn_end(asr, clip, segmenter, options)
            results.setdefault((clip.language, clip.kind), []).append((clip, times))
        for (language, kind), rows in sorted(results.items()):
            cut = [c for c, e in rows if _cut_short(c, e)]
            kept = [(c, e) for c, e in rows if e is not None and not _cut_short(c, e)]
            ends = [1000.0 * (e[0] - c.voice_end_s) for c, e in kept]
            ready = [1000.0 * (e[1] - c.voice_end_s) for c, e in kept]
            cuts = f"{len(cut)}/{len(rows)}" if kind == "pause" else "-"
            head = f"{text:>9} {language:>3} {kind:>8} {len(rows):2d}"
            print(f"{head} {_cell(ends)} {_cell(ready)} {cuts:>6}")
        secs = timed.seconds
        print(
            f"{text:>8} transcriptions {len(secs)}, median {statistics.median(secs):.3f} s, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--configs", default="160/300/0,160/300", help="P/E[/Q], ... (docstring)")
    p.add_argument("--group", choices=[*GROUPS, "all"], default="all")
    p.add_argument("--sets", help="comma-separated voices instead of a group")
    p.add_argument("--clip-cache", type=Path, help="a folder keeping the synthesized clips")
    p.add_argument("--n", type=int, default=4, help="questions and paused sentences per voice")
    p.add_argument("--pauses", default="0.3,0.4", help="seconds of the hesitations")
    p.add_argument("--threads", type=int, default=1, help="the recogniser's CPU threads")
    p.add_argument("--end-silence-ms", type=int, default=500)
    p.add_argument(
        "--asr-ms", type=float, default=0.0, help="each transcription as if it took this (0: real)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.n <= 4:
        p.error("--n must be within 1..4")
    voices = [v for name, group in GROUPS.items() if args.group in (name, "all") for v in group]
    if args.sets:
        voices = args.sets.split(",")
        unknown = [v for v in voices if v not in VOICES]
        if unknown:
            p.error(f"unknown voices {unknown}; known: {', '.join(VOICES)}")
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} cores")
    pauses = [float(x) for x in args.pauses.split(",")]
    clips = make_clips(voices, pauses, args.n, args.clip_cache)
    asyncio.run(run(args, clips))
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
