"""Predictive preloading: fill the speech and clip caches before a caller needs them.

- :func:`warm` synthesizes sentences through a caching Tts and renders their audio through a
  caching Renderer, given the input a reply turn gives it (``render_input``), so the turn
  later finds both in the cache.
- :class:`Preloader` warms a bounded list of lines in the background when an avatar loads:
  the greeting, the fallback and apology lines, the first FAQ answers (:func:`preload_lines`),
  one sentence at a time, pausing while the machine is busy.
- :class:`SpeculativePrefetcher` (one per call) transcribes the caller's speech so far every
  ``interval_s`` while they speak, and when a partial transcript confidently predicts an FAQ
  answer, warms that answer; the final transcript confirms it or cancels the work. Given a
  background lane, its work runs there, apart from the call's own: a guess never holds up
  the reply it guessed at, nor spends the call's share of the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.asr.base import Asr
from inference.dialogue.base import Dialogue
from inference.dialogue.faq import FaqDialogue, FaqDialogueOptions
from inference.dialogue.openai_chat import OpenAiChatDialogue
from inference.dialogue.sentences import split_sentences
from inference.render.base import Renderer, render_input
from inference.tts.base import Tts
from inference.types import SPEECH_RATE, ReplySentence, Transcript, Utterance
from inference.work import WorkLane

__all__ = [
    "PrefetchOptions",
    "PrefetchStats",
    "PreloadOptions",
    "Preloader",
    "SpeculatingDialogue",
    "SpeculativePrefetcher",
    "faq_predictor",
    "machine_busy",
    "preload_lines",
    "warm",
]

log = logging.getLogger(__name__)
Predictor = Callable[[Transcript], Awaitable[tuple[str, list[ReplySentence]] | None]]


def machine_busy(threshold: float = 0.75) -> bool:
    """True when the 1-minute load average per core is above ``threshold``."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load / (os.cpu_count() or 1) > threshold


async def warm(tts: Tts, renderer: Renderer | None, sentences: Sequence[ReplySentence]) -> None:
    """Synthesize and render ``sentences`` as a turn would, discarding the results."""
    for sentence in sentences:
        async for chunk in tts.synthesize(sentence.text, sentence.language):
            if renderer is not None and len(chunk.samples):
                async for _ in renderer.render(render_input(chunk, renderer.fps)):
                    pass


async def _collect(stream: AsyncIterator[ReplySentence]) -> list[ReplySentence]:
    return [s async for s in stream]


async def preload_lines(
    dialogue: Dialogue, *, languages: Sequence[str] = ("en",), faq_answers: int = 8
) -> list[ReplySentence]:
    """The sentences worth having ready, most useful first: greeting, fallback and apology,
    the first sentence of each of the first ``faq_answers`` FAQ answers (what a caller hears
    while the rest is made), then those answers' other sentences."""
    out: list[ReplySentence] = []
    later: list[ReplySentence] = []
    for lang in languages:
        out.append(dialogue.greeting(lang))
        if isinstance(dialogue, OpenAiChatDialogue):
            kb = dialogue.index.knowledge_base
            for line in (dialogue.apology(lang), kb.fallback.get(lang, "")):
                out += [ReplySentence(s, lang, i) for i, s in enumerate(split_sentences(line))]
        if isinstance(dialogue, FaqDialogue):
            out += await _collect(dialogue.reply(Transcript(text="", language=lang)))
    if isinstance(dialogue, FaqDialogue):
        for entry in dialogue.entries[:faq_answers]:
            for lang in languages:
                question = Transcript(text=entry.questions[lang][0], language=lang)
                sentences = await _collect(dialogue.reply(question))
                out += sentences[:1]
                later += sentences[1:]
    seen: set[tuple[str, str]] = set()
    unique = []
    for s in [*out, *later]:
        if (s.text, s.language) not in seen:
            seen.add((s.text, s.language))
            unique.append(s)
    return unique


@dataclass(frozen=True, slots=True, kw_only=True)
class PreloadOptions:
    """At most ``max_sentences``, within ``max_seconds``; waits while ``busy()`` says so."""

    max_sentences: int = 256
    max_seconds: float = 600.0
    busy_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_sentences < 0 or self.max_seconds <= 0 or self.busy_wait_s <= 0:
            raise ValueError("max_sentences >= 0, max_seconds > 0 and busy_wait_s > 0 needed")


class Preloader:
    """Warms lines one sentence at a time (a background task; cancel it to stop)."""

    def __init__(
        self,
        *,
        tts: Tts,
        renderer: Renderer | None,
        options: PreloadOptions | None = None,
        busy: Callable[[], bool] = machine_busy,
    ) -> None:
        self._tts = tts
        self._renderer = renderer
        self.options = options or PreloadOptions()
        self._busy = busy
        self.done = 0

    async def run(self, sentences: Sequence[ReplySentence]) -> int:
        """Warm ``sentences`` (bounded); returns how many were warmed."""
        opts = self.options
        deadline = time.monotonic() + opts.max_seconds
        for sentence in sentences[: opts.max_sentences]:
            await self._wait_idle(deadline)
            if time.monotonic() >= deadline:
                log.info("preload: time budget spent after %d sentences", self.done)
                break
            await warm(self._tts, self._renderer, [sentence])
            self.done += 1
        return self.done

    async def _wait_idle(self, deadline: float) -> None:
        """Sleep in steps of ``busy_wait_s`` while the machine is busy (until ``deadline``)."""
        steps = math.ceil(max(0.0, deadline - time.monotonic()) / self.options.busy_wait_s)
        for _ in range(steps):
            if not self._busy():
                return
            await asyncio.sleep(self.options.busy_wait_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefetchOptions:
    """Transcribe the speech so far every ``interval_s`` once ``min_speech_s`` is heard, at
    most ``max_audio_s`` of it (the most recent)."""

    interval_s: float = 1.0
    min_speech_s: float = 0.8
    max_audio_s: float = 8.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.min_speech_s < 0 or self.max_audio_s <= 0:
            raise ValueError("interval_s > 0, min_speech_s >= 0 and max_audio_s > 0 needed")


def faq_predictor(
    dialogue: FaqDialogue, options: FaqDialogueOptions, *, confidence: float = 1.5
) -> Predictor:
    """Predicts the FAQ answer when the match scores ``confidence`` × the answer threshold."""

    async def predict(transcript: Transcript) -> tuple[str, list[ReplySentence]] | None:
        found = dialogue.match(transcript.text, transcript.language)
        if found is None:
            return None
        entry_id, score = found
        if score < confidence * options.min_score(transcript.language):
            return None
        return entry_id, await _collect(dialogue.reply(transcript))

    return predict


@dataclass(slots=True)
class PrefetchStats:
    """What one call's speculation did (``events`` lists predictions and their fate)."""

    started: int = 0
    skipped_busy: int = 0
    predicted: int = 0
    confirmed: int = 0
    dropped: int = 0
    events: list[str] = field(default_factory=list)


class SpeculativePrefetcher:
    """One call's speculation: :meth:`observe` every mic frame, :meth:`final` per transcript.
    With a ``lane`` (a background one, see :mod:`inference.work`) the speculation runs its
    blocking work there; :meth:`close` closes it."""

    def __init__(
        self,
        *,
        asr: Asr,
        predict: Predictor,
        warm_reply: Callable[[list[ReplySentence]], Awaitable[None]],
        language: str = "en",
        options: PrefetchOptions | None = None,
        busy: Callable[[], bool] = machine_busy,
        lane: WorkLane | None = None,
    ) -> None:
        self._lane = lane
        self._asr = asr
        self._predict = predict
        self._warm = warm_reply
        self._language = language
        self.options = options or PrefetchOptions()
        self._busy = busy
        self._task: asyncio.Task[None] | None = None
        self._last_at: float | None = None
        self.prediction: str | None = None
        self.stats = PrefetchStats()

    def observe(
        self, speech: np.ndarray | Callable[[], np.ndarray | None] | None, now: float
    ) -> None:
        """``speech``: the current utterance's 16 kHz audio so far (or a function giving it,
        called only when a speculation may start), None when not speaking."""
        opts = self.options
        if callable(speech):
            if self._last_at is not None and now - self._last_at < opts.interval_s:
                return  # cheap early exit: no copy of the speech on most frames
            speech = speech()
        if speech is None:
            self._last_at = None
            return
        if len(speech) < opts.min_speech_s * SPEECH_RATE:
            return
        if self._last_at is not None and now - self._last_at < opts.interval_s:
            return
        self._last_at = now
        if self._task is not None and not self._task.done():
            return  # one speculation at a time
        if self._busy():
            self.stats.skipped_busy += 1
            return
        tail = speech[-int(opts.max_audio_s * SPEECH_RATE) :].copy()
        self.stats.started += 1
        coro = self._speculate(tail, now)
        self._task = (
            asyncio.ensure_future(coro) if self._lane is None else self._lane.create_task(coro)
        )

    async def _speculate(self, speech: np.ndarray, now: float) -> None:
        start = now - len(speech) / SPEECH_RATE
        utt = Utterance(samples=speech, start_s=start, end_s=now, language=self._language)
        try:
            partial = await self._asr.transcribe(utt)
            if not partial.text.strip():
                return
            found = await self._predict(partial)
            if found is None:
                return
            key, sentences = found
            self.prediction = key
            self.stats.predicted += 1
            self.stats.events.append(f"predict {key}")
            await self._warm(sentences)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # speculation must never hurt the call
            log.info("speculative prefetch failed: %s", exc)

    async def final(self, transcript: Transcript) -> bool:
        """The final transcript: keep the speculation if it predicts the same answer
        (returns True), else cancel it (False)."""
        predicted, self.prediction = self.prediction, None
        if predicted is None:
            await self._drop()
            return False
        found = await self._predict(transcript)
        if found is not None and found[0] == predicted:
            self.stats.confirmed += 1
            self.stats.events.append(f"confirm {predicted}")
            return True
        self.stats.dropped += 1
        self.stats.events.append(f"drop {predicted}")
        await self._drop()
        return False

    async def _drop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self._drop()
        if self._lane is not None:
            self._lane.close()


class SpeculatingDialogue:
    """A call's dialogue that first tells its prefetcher the final transcript (which keeps
    or drops the speculation), then replies as ``inner`` does."""

    def __init__(self, inner: Dialogue, prefetcher: SpeculativePrefetcher) -> None:
        self.inner = inner
        self.prefetcher = prefetcher

    def greeting(self, language: str = "en") -> ReplySentence:
        return self.inner.greeting(language)

    async def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        await self.prefetcher.final(transcript)
        async for sentence in self.inner.reply(transcript):
            yield sentence
