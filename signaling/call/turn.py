"""One reply turn: transcript → sentences → speech → frames → the call's A/V timeline.

A turn runs as one task; cancelling it (barge-in, a new turn) stops the dialogue stream, the
TTS and the renderer together. Text-to-speech of the next sentence overlaps the rendering
of the current one through a small bounded queue. A reply that starts from silence starts
with the sink's short lead when 0.3 s of its frames are in hand (:class:`ReadySink`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from inference.asr.base import Asr
from inference.audio import fit_length, resample_int16
from inference.dialogue.base import Dialogue
from inference.render.base import Renderer, render_input, reply_frames, seeker
from inference.tts.base import Tts
from inference.types import Intent, PcmChunk, ReplySentence, Transcript, Utterance
from inference.work import run_blocking
from signaling.call.events import ControlEvent, ReplyText, StateChanged, Timings, TranscriptEvent

__all__ = [
    "MediaSink",
    "ReadySink",
    "TurnHooks",
    "TurnObserver",
    "TurnRequest",
    "TurnRunner",
    "detect_language",
]


class TurnObserver(Protocol):
    """Receives stage durations (seconds) and render batch sizes, e.g. for metrics."""

    def stage(self, name: str, seconds: float) -> None: ...

    def batch(self, frames: int) -> None: ...


class _NoObserver:
    def stage(self, name: str, seconds: float) -> None:
        pass

    def batch(self, frames: int) -> None:
        pass


class TurnHooks(Protocol):
    """What the call does with a turn besides speaking: a reply's intent (once per turn, e.g.
    a handoff to a person) and what a listen-only turn heard (a person has the call)."""

    def intent(self, intent: Intent, language: str) -> None: ...

    def overheard(self, transcript: Transcript) -> None: ...


class _NoHooks:
    def intent(self, intent: Intent, language: str) -> None:
        pass

    def overheard(self, transcript: Transcript) -> None:
        pass


class MediaSink(Protocol):
    """Where finished reply media goes (the call's AvPlayer)."""

    def push(self, audio: np.ndarray, frames: Sequence[np.ndarray]) -> float: ...

    def next_start(self) -> float:
        """Clock time at which media pushed now would start playing."""
        ...

    @property
    def busy_until(self) -> float:
        """Clock time at which everything scheduled so far has played."""
        ...


@runtime_checkable
class ReadySink(Protocol):
    """A sink that starts media sooner from silence when more of it is in hand: ``lead_s``
    ahead of now for :meth:`MediaSink.push`, ``ready_lead_s`` for :meth:`push_ready`."""

    lead_s: float
    ready_lead_s: float

    def push_ready(self, audio: np.ndarray, frames: Sequence[np.ndarray]) -> float: ...

    def next_ready_start(self) -> float:
        """Clock time at which media pushed ready now would start playing."""
        ...


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """What starts a turn: a spoken utterance, typed text, or the greeting."""

    turn: int
    speech_end: float  # clock time the caller stopped speaking (or typed / call start)
    utterance: Utterance | None = None
    text: str | None = None
    greeting: bool = False
    verbatim: bool = False  # say ``text`` as it is (a goodbye), no dialogue
    listen_only: bool = False  # transcribe and tell the hooks, no reply (a person has the call)
    language: str = "en"
    # The utterance's transcript already under way (early ASR during the end-of-speech pause).
    early_transcript: asyncio.Task[Transcript] | None = None


def detect_language(text: str) -> str:
    """'zh' when the text holds CJK ideographs, else 'en'."""
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


class TurnRunner:
    """Runs turns for one call. Cheap: it only holds references to per-process models."""

    def __init__(
        self,
        *,
        asr: Asr,
        dialogue: Dialogue,
        tts: Tts,
        renderer: Renderer,
        sink: MediaSink,
        emit: Callable[[ControlEvent], None],
        now: Callable[[], float],
        output_rate: int = 48000,
        observer: TurnObserver | None = None,
        hooks: TurnHooks | None = None,
    ) -> None:
        self._asr = asr
        self._dialogue = dialogue
        self._tts = tts
        self._renderer = renderer
        self._sink = sink
        self._emit = emit
        self._now = now
        self._output_rate = output_rate
        self._observer: TurnObserver = observer or _NoObserver()
        self._hooks: TurnHooks = hooks or _NoHooks()

    async def run(self, req: TurnRequest) -> dict[str, float]:
        """Run one turn to the end; returns the stage timings (ms after speech end)."""
        marks: dict[str, float] = {}

        def mark(name: str, at: float | None = None) -> None:
            if name not in marks:
                t = self._now() if at is None else at
                marks[name] = round((t - req.speech_end) * 1000.0, 1)

        sentences: AsyncIterator[ReplySentence]
        if req.listen_only:
            heard = await self._transcript(req, mark)
            if heard is not None:
                self._hooks.overheard(heard)
            return marks
        if req.greeting:
            sentences = _one(self._dialogue.greeting(req.language))
        elif req.verbatim and req.text is not None:
            lang = detect_language(req.text)
            sentences = _one(ReplySentence(text=req.text, language=lang))
        else:
            transcript = await self._transcript(req, mark)
            if transcript is None:
                self._emit(StateChanged(state="listening"))
                return marks
            sentences = self._dialogue.reply(transcript)
        self._emit(StateChanged(state="thinking"))

        queue: asyncio.Queue[tuple[ReplySentence, PcmChunk] | None] = asyncio.Queue(maxsize=2)

        intents: set[Intent] = set()

        async def produce() -> None:
            try:
                async for sentence in sentences:
                    if sentence.intent is not None and sentence.intent not in intents:
                        intents.add(sentence.intent)
                        self._hooks.intent(sentence.intent, sentence.language)
                    mark("first_sentence")
                    self._emit(
                        ReplyText(
                            text=sentence.text,
                            language=sentence.language,
                            turn=req.turn,
                            index=sentence.index,
                            source=sentence.source,
                        )
                    )
                    asked: float | None = self._now()
                    async for chunk in self._tts.synthesize(sentence.text, sentence.language):
                        if asked is not None:
                            self._observer.stage("tts_first_audio", self._now() - asked)
                            asked = None
                        if len(chunk.samples):
                            mark("first_audio")
                            await queue.put((sentence, chunk))
            finally:
                await queue.put(None)

        async def consume() -> None:
            speaking = False
            while (item := await queue.get()) is not None:
                _, chunk = item
                async for start in self._play(chunk, mark):
                    mark("first_sent", at=start)
                    if not speaking:
                        speaking = True
                        self._emit(StateChanged(state="speaking"))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            tg.create_task(consume())
        self._emit(Timings(turn=req.turn, stages=dict(marks)))
        return marks

    async def _early(self, req: TurnRequest) -> Transcript | None:
        """The early transcript when there is one and it worked (else the turn runs ASR)."""
        if req.early_transcript is None:
            return None
        try:
            return await req.early_transcript
        except asyncio.CancelledError:
            if req.early_transcript.cancelled() and not _current_cancelling():
                return None  # only the early attempt was cancelled, not this turn
            raise
        except Exception:
            return None

    async def _transcript(self, req: TurnRequest, mark: Callable[[str], None]) -> Transcript | None:
        if req.utterance is not None:
            began = self._now()
            transcript = await self._early(req) or await self._asr.transcribe(req.utterance)
            self._observer.stage("asr", self._now() - began)
            mark("asr_done")
        elif req.text is not None:
            transcript = Transcript(text=req.text, language=detect_language(req.text))
        else:
            raise ValueError("a turn needs an utterance, text or greeting")
        if not transcript.text.strip():
            return None
        self._emit(
            TranscriptEvent(text=transcript.text, language=transcript.language, turn=req.turn)
        )
        return transcript

    def _align_with_idle_loop(self, fps: int, hold_s: float) -> None:
        """When speech starts from silence, talk from the source frame the idle loop shows
        at that moment (a video avatar then never jumps between idle and talking)."""
        timeline = seeker(self._renderer)  # renderers without a timeline have nothing to align
        if timeline is None or self._sink.busy_until > self._now():
            return  # continuing speech that is scheduled or playing: no jump to make
        sink = self._sink
        if hold_s > 0 and isinstance(sink, ReadySink):
            start = sink.next_ready_start()
        else:
            start = sink.next_start()
        timeline.seek(math.floor(start * fps + 1e-6))

    def _hold_s(self) -> float:
        """How long the first batches of a reply may be held to start it with the sink's
        short lead: the difference of its leads when it plays nothing, else 0."""
        sink = self._sink
        if not isinstance(sink, ReadySink) or sink.busy_until > self._now():
            return 0.0
        return max(0.0, sink.lead_s - sink.ready_lead_s)

    async def _play(self, chunk: PcmChunk, mark: Callable[[str], None]) -> AsyncIterator[float]:
        """Render one chunk of speech and push it to the sink batch by batch."""
        fps = self._renderer.fps
        n_frames = reply_frames(chunk, fps)
        per_frame_out = self._output_rate // fps
        # Resampling a sentence takes tens of ms: off the loop, so no video tick is missed.
        out_rate = self._output_rate
        audio_out, audio_render = await run_blocking(
            lambda: (
                fit_length(
                    resample_int16(chunk.samples, chunk.sample_rate, out_rate),
                    n_frames * per_frame_out,
                ),
                render_input(chunk, fps),
            )
        )
        hold_s = self._hold_s()
        self._align_with_idle_loop(fps, hold_s)
        done = 0
        last: np.ndarray | None = None
        began = self._now()

        def push(batch: list[np.ndarray], ready: bool) -> float:
            nonlocal done, last
            seg = audio_out[done * per_frame_out : (done + len(batch)) * per_frame_out]
            sink = self._sink
            if ready and isinstance(sink, ReadySink):
                start = sink.push_ready(seg, batch)
            else:
                start = sink.push(seg, batch)
            done += len(batch)
            last = batch[-1]
            return start

        need = min(n_frames, math.ceil(_IN_HAND_S * fps))
        frames = self._renderer.render(audio_render)
        async for batch, ready in _in_hand(frames, need, hold_s, self._now, mark):
            self._observer.stage("render_batch", self._now() - began)
            self._observer.batch(len(batch))
            batch = batch[: n_frames - done]
            if batch:
                yield push(batch, ready)
            began = self._now()
        if done < n_frames and last is not None:
            # A renderer that came up short: keep the voice, hold the last face.
            yield self._sink.push(audio_out[done * per_frame_out :], [last] * (n_frames - done))


async def _in_hand(
    batches: AsyncIterator[list[np.ndarray]],
    need: int,
    hold_s: float,
    now: Callable[[], float],
    mark: Callable[[str], None],
) -> AsyncIterator[tuple[list[np.ndarray], bool]]:
    """A renderer's batches, each with whether the sink may start it with its short lead.

    With ``hold_s`` (a start from silence), the first batches are held together until
    ``need`` frames are in hand, for at most ``hold_s`` after the first one (the difference
    of the sink's two leads): pushed then with the short lead, they start no later than the
    first batch alone would have with the plain lead, and with more media behind them.
    """
    held: list[np.ndarray] = []
    first_at: float | None = None
    pending: asyncio.Future[list[np.ndarray] | None] | None = None
    try:
        while hold_s > 0 and len(held) < need:
            pending = asyncio.ensure_future(anext(batches, None))
            if first_at is not None:
                await asyncio.wait({pending}, timeout=first_at + hold_s - now())
                if not pending.done():
                    break  # holding on would start the media later than pushing it now
            batch = await pending
            pending = None
            if batch is None:
                break  # the render ended: all of it is in hand
            mark("first_frame")
            first_at = now() if first_at is None else first_at
            held.extend(batch)
        if held:
            yield held, True
        if pending is not None:
            batch = await pending
            pending = None
            if batch is None:
                return
            yield batch, False
        async for batch in batches:
            mark("first_frame")
            yield batch, False
    finally:
        if pending is not None:
            pending.cancel()


_IN_HAND_S = 0.3  # media in hand that lets a reply start with the sink's short lead


def _current_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _one(item: ReplySentence) -> AsyncIterator[ReplySentence]:
    yield item
