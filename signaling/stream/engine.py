"""One avatar's stream: the call's stages and timeline without a peer connection.

A :class:`StreamEngine` holds what a call holds for its outgoing media (a clock, an
``AvPlayer`` timeline, a renderer from the process's :class:`Services`, a lane of the fair
executor) and runs what it is told, one turn after another, through the same
:class:`~signaling.call.turn.TurnRunner` a call uses: text to say as it is, a question for
the dialogue stage, audio to lip-sync. ``interrupt`` cancels the turn and flushes the
timeline; ``switch_avatar`` changes the face between words.

Its clock is an :class:`~media.gst.source.OutputTime`: it runs only while an output plays
the stream, so when the ingest drops the avatar waits on the same word.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from inference.render.base import Renderer
from inference.types import PcmChunk
from media.clock import MediaClock
from media.gst.source import SAMPLE_RATE, OutputTime, SourceError
from media.player import AvPlayer, IdleLoop
from signaling.call.events import ControlEvent
from signaling.call.turn import TurnRequest, TurnRunner
from signaling.stages.services import Services

__all__ = ["StreamEngine", "StreamOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOptions:
    """One stream: its avatar, frame rate, picture height and whether it answers questions."""

    avatar: str = "astronaut"
    fps: int = 25
    height: int = 512
    dialogue: bool = False
    lead_s: float = 0.12
    max_queued_turns: int = 32

    def __post_init__(self) -> None:
        if SAMPLE_RATE % self.fps or not 5 <= self.fps <= 60:
            raise ValueError(f"fps must be within 5..60 and divide {SAMPLE_RATE}, got {self.fps}")
        if self.height < 16:
            raise ValueError(f"height must be >= 16, got {self.height}")


class _Clip:
    """A ``Tts`` that says one piece of given audio, whatever the text: lip-sync of
    supplied speech goes through the same turn as synthesized speech."""

    def __init__(self, chunk: PcmChunk) -> None:
        self._chunk = chunk

    async def synthesize(self, text: str, language: str = "en") -> AsyncIterator[PcmChunk]:
        yield PcmChunk(self._chunk.samples, self._chunk.sample_rate, final=True)


@dataclass(frozen=True, slots=True)
class _Job:
    turn: int
    kind: str  # "say", "ask", "audio"
    text: str
    audio: PcmChunk | None = None


class StreamEngine:
    """The timeline of one stream and the turns that fill it (lives on one event loop)."""

    def __init__(
        self,
        services: Services,
        options: StreamOptions,
        *,
        name: str = "stream",
        on_event: Callable[[ControlEvent], None] | None = None,
    ) -> None:
        self.services = services
        self.options = options
        self.name = name
        self.time = OutputTime()
        self.clock = MediaClock(time_fn=self.time)
        self.player = AvPlayer(clock=self.clock, fps=options.fps, lead_s=options.lead_s)
        self.avatar = options.avatar
        self._renderer: Renderer | None = None
        self._idle: IdleLoop | None = None
        self._on_event = on_event
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue(options.max_queued_turns)
        self._turns = itertools.count(1)
        self._current: asyncio.Task[dict[str, float]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.lane = services.work.lane(name)
        self.said: list[tuple[int, str]] = []  # (turn, kind) of the turns that finished

    @property
    def fps(self) -> int:
        return self.options.fps

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def start(self) -> None:
        """Load the avatar's renderer and idle loop, and start taking turns."""
        await self._use_avatar(self.options.avatar)
        self._worker = self.lane.create_task(self._work())

    async def _use_avatar(self, name: str) -> None:
        try:
            renderer = await self.services.renderer_for(name, session=self.name)
        except KeyError as exc:
            known = ", ".join(self.services.avatar_names())
            raise SourceError(
                f"avatar {name!r} is not prepared in {self.services.avatars.root}/ "
                f"(prepared: {known}); prepare it with `avatar-rtc prepare PHOTO --name {name}`"
            ) from exc
        if renderer.fps != self.options.fps:
            raise SourceError(
                f"the renderer runs at {renderer.fps} fps but the stream at {self.options.fps}"
            )
        renderer.set_output_height(self.options.height)
        idle = await asyncio.to_thread(lambda: IdleLoop(renderer.idle_frames(), self.fps))
        self._renderer, self._idle, self.avatar = renderer, idle, name

    # ---- the timeline (AvSource) ----------------------------------------------------
    def audio_at(self, t: float, n: int) -> np.ndarray:
        return self.player.audio_at(t, n)

    def frame_at(self, t: float) -> np.ndarray:
        frame = self.player.frame_at(t)
        if frame is not None:
            return frame
        assert self._idle is not None, "start() first"
        return self._idle.frame_at(t)

    def resume(self) -> None:
        self.time.resume()

    def pause(self) -> None:
        self.time.pause()

    # ---- commands -------------------------------------------------------------------
    def say(self, text: str) -> int:
        """Queue ``text`` to be said as it is; returns its turn number."""
        return self._queue("say", _text(text))

    def ask(self, question: str) -> int:
        """Queue a question for the dialogue stage (dialogue mode only)."""
        if not self.options.dialogue:
            raise ValueError("this stream does not answer questions (start it with dialogue on)")
        return self._queue("ask", _text(question))

    def lipsync(self, samples: np.ndarray, sample_rate: int) -> int:
        """Queue mono int16 speech to be played with the avatar's lips following it."""
        chunk = PcmChunk(np.asarray(samples, dtype=np.int16), sample_rate)
        if chunk.duration_s <= 0 or chunk.duration_s > 600:
            raise ValueError(f"audio must last 0..600 s, got {chunk.duration_s:.1f} s")
        return self._queue("audio", "", chunk)

    def interrupt(self) -> float:
        """Stop talking now: drop queued turns, cancel the current one, flush the timeline;
        returns the seconds of media dropped."""
        while not self._jobs.empty():
            self._jobs.get_nowait()
        if self._current is not None:
            self._current.cancel()
        return self.player.flush()

    async def switch_avatar(self, name: str) -> None:
        """Change the face (after an interrupt: the new face starts from idle)."""
        self.interrupt()
        old = self.avatar
        await self._use_avatar(name)
        if old != name:
            self.services.renderers.release(self.name)

    @property
    def speaking(self) -> bool:
        return self.player.speaking(self.clock.now())

    @property
    def queued_s(self) -> float:
        return self.player.queued_s

    def _queue(self, kind: str, text: str, audio: PcmChunk | None = None) -> int:
        turn = next(self._turns)
        try:
            self._jobs.put_nowait(_Job(turn, kind, text, audio))
        except asyncio.QueueFull:
            raise ValueError(f"{self._jobs.maxsize} turns are queued already") from None
        return turn

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            self._current = asyncio.ensure_future(self._run(job))
            try:
                await self._current
                self.said.append((job.turn, job.kind))
            except asyncio.CancelledError:
                if self._worker is not None and self._worker.cancelling():
                    raise
            except Exception:
                log.exception("stream %s: turn %d failed", self.name, job.turn)
            finally:
                self._current = None

    async def _run(self, job: _Job) -> dict[str, float]:
        assert self._renderer is not None
        tts = self.services.tts if job.audio is None else _Clip(job.audio)
        runner = TurnRunner(
            asr=self.services.asr,
            dialogue=self.services.dialogue,
            tts=tts,
            renderer=self._renderer,
            sink=self.player,
            emit=self._emit,
            now=self.clock.now,
            output_rate=SAMPLE_RATE,
        )
        now = self.clock.now()
        if job.kind == "ask":
            request = TurnRequest(turn=job.turn, speech_end=now, text=job.text)
        else:
            text = job.text or "(audio)"
            request = TurnRequest(turn=job.turn, speech_end=now, text=text, verbatim=True)
        return await runner.run(request)

    def _emit(self, event: ControlEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def aclose(self) -> None:
        """Stop the turns; the services stay (they belong to the process)."""
        self.interrupt()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.lane.close()
        self.services.renderers.release(self.name)


def _text(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("the text is empty")
    if len(text) > 2000:
        raise ValueError(f"the text is {len(text)} characters; at most 2000")
    return text
