"""Session: owns one call — its peer connection, A/V timeline, listener and reply turns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from inference.asr.call import CallAsr
from inference.audio import resample_int16
from inference.dialogue.base import ConversationMemory
from inference.dialogue.handoff import HandoffGuard
from inference.preload import SpeculatingDialogue
from inference.render.base import Renderer
from inference.types import SPEECH_RATE, Transcript, Utterance
from media.clock import MediaClock
from media.congestion.loop import (
    AdaptationOptions,
    QualityChange,
    QualityLoop,
    attach_quality,
    negotiate_answer,
)
from media.ingest import MicIngest
from media.player import AvPlayer, IdleLoop
from media.tracks import ClockedAudioTrack, ClockedVideoTrack
from media.vad import Segmenter, SegmenterOptions, SpeechDropped, SpeechStarted, UtteranceReady
from signaling.call.early_asr import EarlyAsr, EarlyAsrOptions
from signaling.call.events import (
    BargeIn,
    ControlEvent,
    ErrorEvent,
    Hello,
    QualityChanged,
    ReplyText,
    SpeechEvent,
    StateChanged,
)
from signaling.call.handoff import CallHandoff, HandoffOptions
from signaling.call.observers import CallObservers
from signaling.call.supervise import SupervisedRenderer
from signaling.call.turn import TurnRequest, TurnRunner
from signaling.ice import rtc_configuration
from signaling.metrics import Metrics
from signaling.stages.services import Services

__all__ = ["Session", "SessionOptions"]

log = logging.getLogger(__name__)

_PEER_CLOSE_S = 2.0  # a resume waits this long at most for the old peer connection to close
_OVER_SHARE_RUNG = 3  # the best rung of a call over its CPU share (256 px, 15 fps by default)
_FLOOD_CUTS = 3  # replies cut off within _FLOOD_WINDOW_S (new turns, barge-ins): a flood ...
_FLOOD_WINDOW_S = 10.0  # ... which, with half its stage-work budget spent, is over its share


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    avatar: str
    language: str = "en"
    fps: int = 25
    lead_s: float = 0.12
    video_offset_s: float = 0.0
    heartbeat_timeout_s: float = 8.0  # no WebSocket, no message, no mic media: hang up
    resume_grace_s: float = 15.0  # peer connection lost: wait this long for a resume offer
    connect_timeout_s: float = 4.0  # media never connected this long after the answer: hang up
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    early_asr: EarlyAsrOptions = field(default_factory=EarlyAsrOptions)
    adaptation: AdaptationOptions = field(default_factory=AdaptationOptions)
    greet: bool = True
    max_queued_events: int = 512
    handoff: HandoffOptions = field(default_factory=HandoffOptions)

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.heartbeat_timeout_s <= 0 or self.resume_grace_s <= 0:
            raise ValueError("fps, heartbeat_timeout_s and resume_grace_s must be positive")
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")


class Session:
    """One call. Created by ``/offer``; closed when the client hangs up (WebSocket close
    1000), after ``heartbeat_timeout_s`` without any sign of life, or ``resume_grace_s``
    after its peer connection was lost and not resumed (:meth:`resume`)."""

    def __init__(
        self,
        *,
        session_id: str,
        services: Services,
        renderer: Renderer,
        options: SessionOptions,
        ice_servers: list[dict[str, object]],
        on_closed: Callable[[Session], None] | None = None,
        metrics: Metrics | None = None,
        observers: CallObservers | None = None,
    ) -> None:
        self.id = session_id
        self.observers = observers or CallObservers()
        self.metrics = metrics or Metrics()
        self.options = options
        self.clock = MediaClock()
        self._services = services
        self.supervisor = SupervisedRenderer(
            renderer, restart=self._restart_renderer, on_failure=self._on_render_failure
        )
        self.renderer: Renderer = self.supervisor
        # where the page and the bot find the lips (the avatar is loaded: it has a renderer)
        self._mouth_box = services.avatar(options.avatar).mouth_box()
        self._top_height = renderer.frame_size[1]  # what the quality may climb back to
        self._ice_servers = list(ice_servers)
        self.open_peers: set[RTCPeerConnection] = set()  # made and not yet closed (at most 2)
        self._resuming = asyncio.Lock()  # one resume at a time
        self._resume_rung: int | None = None  # the quality rung a resumed call goes on at
        self._over_share = False  # a flood over its stage-work share: held at a low rung
        self._cancelled: list[float] = []  # clock times of replies cut off, recent ones
        self.pc = self._new_peer()
        self.player = AvPlayer(
            clock=self.clock,
            fps=options.fps,
            lead_s=options.lead_s,
            video_offset_s=options.video_offset_s,
        )
        self.audio_track, self.video_track = self._new_tracks()
        self._dropped_seen = 0
        # Speculation: while the caller speaks, a confident FAQ match of the speech so far
        # is synthesized and rendered into the cache; the final transcript keeps or drops it.
        self._prefetch = services.prefetcher_for_call(self.renderer, session_id, options.language)
        dialogue = services.dialogue_for_call()
        self.handoff = self._new_handoff(dialogue)
        if options.handoff.enabled:  # a second request for a person hands off in any case
            dialogue = HandoffGuard(dialogue, options.handoff.guard)
        if self._prefetch is not None:
            dialogue = SpeculatingDialogue(dialogue, self._prefetch)
        # the caller's language, followed turn by turn, is each utterance's expected language
        asr = CallAsr(services.asr, language=options.language)
        self._runner = TurnRunner(
            asr=asr,
            dialogue=dialogue,
            tts=services.tts,
            renderer=self.renderer,
            sink=self.player,
            emit=self.emit,
            now=self.clock.now,
            observer=_MetricsObserver(self.metrics),
            hooks=self.handoff,
        )
        self._segmenter = Segmenter(options.segmenter)
        self._early = EarlyAsr(asr, options=options.early_asr)
        # an operator's spoken lines, transcribed apart (the caller's language stays theirs)
        self._operator_asr = CallAsr(services.asr, language=options.language)
        self._events: asyncio.Queue[ControlEvent] = asyncio.Queue(options.max_queued_events)
        self._tasks: set[asyncio.Task[None]] = set()
        # this call's share of the stage workers: its tasks' blocking work queues here
        self.lane = services.work.lane(session_id)
        self._turn_task: asyncio.Task[None] | None = None
        self._turn = 0
        self._last_seen = self.clock.now()
        self._ws_attached = 0
        self._media_lost_at: float | None = self.clock.now()  # until the peer connects
        self._connect_by: float | None = None  # the first answer's media deadline
        self._connected_once = False
        self.resumes = 0
        self.ws_attaches = 0
        self.close_reason = ""
        self._greeted = False
        self._on_closed = on_closed
        self._closing: asyncio.Future[None] | None = None
        self.quality: QualityLoop | None = None
        self.closed = asyncio.Event()
        self._watching = False
        # who else hears the caller (an operator's voice peer, a media recording): each gets
        # every 20 ms mic frame (16 kHz int16) with its clock time; a tap never raises
        self.mic_taps: list[Callable[[np.ndarray, float], None]] = []

    def _new_handoff(self, dialogue: object) -> CallHandoff:
        return CallHandoff(
            self.options.handoff,
            language=self.options.language,
            speak=self.speak,
            busy=self._busy,
            interrupt=self.interrupt,
            emit=self.emit,
            spawn=self._spawn,
            now=self.clock.now,
            memory=dialogue if isinstance(dialogue, ConversationMemory) else None,
        )

    def _new_peer(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration(self._ice_servers))  # type: ignore[arg-type]
        self.open_peers.add(pc)
        pc.on("track", self._on_track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            await self._on_connection_state(pc)

        return pc

    def _new_tracks(self) -> tuple[ClockedAudioTrack, ClockedVideoTrack]:
        audio = ClockedAudioTrack(self.player, self.clock)
        video = ClockedVideoTrack(
            self.player,
            self.clock,
            IdleLoop(self.renderer.idle_frames(), self.options.fps),
            fps=self.options.fps,
            on_frame=self._on_frame,
        )
        return audio, video

    # ---- signaling -------------------------------------------------------------------
    async def accept(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Apply the caller's offer and return our answer (all candidates gathered)."""
        await self.pc.setRemoteDescription(offer)
        self.pc.addTrack(self.audio_track)
        self.pc.addTrack(self.video_track)
        answer = await self.pc.createAnswer()
        adaptation = self.options.adaptation
        if self._resume_rung is not None:  # a resume goes on at the call's rung, not the top
            start = replace(adaptation.quality, start_index=self._resume_rung)
            adaptation = replace(adaptation, quality=start, max_height=self._top_height)
        sdp = negotiate_answer(answer.sdp, offer.sdp, adaptation)  # transport-cc, if offered
        await self.pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type=answer.type))
        self.quality = attach_quality(self, adaptation, on_change=self._on_quality)
        if self._connect_by is None:
            self._connect_by = self.clock.now() + self.options.connect_timeout_s
        if not self._watching:
            self._watching = True
            self._spawn(self._watchdog())
        self.hello()
        return self.pc.localDescription

    async def resume(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Continue this call on a new peer connection (the client lost the old one): the
        conversation, the turn in progress and the queued events are kept. Resumes run one
        at a time, and the old peer connection is closed (waited for, at most
        ``_PEER_CLOSE_S``) before the new one is made: a call never holds more than two."""
        async with self._resuming:
            return await self._resume(offer)

    async def _resume(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        if self.closed.is_set():
            raise RuntimeError(f"session {self.id} is closed")
        old_pc, old_tracks, old_quality = (
            self.pc,
            (self.audio_track, self.video_track),
            self.quality,
        )
        self.quality = None
        if old_quality is not None:
            self._resume_rung = old_quality.controller.ladder.index(old_quality.rung)
            await old_quality.stop()
        for track in old_tracks:
            track.stop()
        closing = self._spawn(self._close_peer(old_pc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closing), _PEER_CLOSE_S)
        self.pc = self._new_peer()
        self.audio_track, self.video_track = self._new_tracks()
        self._dropped_seen = 0
        self._segmenter = Segmenter(self.options.segmenter)
        self._media_lost_at = self.clock.now()
        self.resumes += 1
        self.touch()
        log.info("session %s: resuming on a new peer connection", self.id)
        return await self.accept(offer)

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        except Exception:
            log.exception("session %s: closing a peer connection failed", self.id)
        finally:
            self.open_peers.discard(pc)

    def hello(self) -> None:
        """Queue the ``hello`` event (sent on every attach of a control WebSocket)."""
        self.emit(
            Hello(
                session=self.id,
                avatar=self.options.avatar,
                fps=self.options.fps,
                mouth_box=list(self._mouth_box),
            )
        )

    def emit(self, event: ControlEvent) -> None:
        """Queue an event for the control WebSocket (oldest dropped when nobody reads)."""
        if self._events.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._events.get_nowait()
        self._events.put_nowait(event)
        self.observers.event(self.id, time.time(), event)

    async def next_event(self) -> ControlEvent:
        return await self._events.get()

    def touch(self) -> None:
        """The client showed it is alive (any WebSocket message)."""
        self._last_seen = self.clock.now()

    def ws_attached(self, attached: bool) -> None:
        """A control WebSocket opened (True) or went away (False)."""
        self._ws_attached = max(0, self._ws_attached + (1 if attached else -1))
        self.touch()
        if attached:
            self.ws_attaches += 1
            if self.ws_attaches > 1:  # a reconnect: tell the new socket what call this is
                self.hello()

    @property
    def control_attached(self) -> bool:
        return self._ws_attached > 0

    # ---- turns -------------------------------------------------------------------------
    def say_text(self, text: str) -> None:
        """Typed input: a turn like a spoken utterance."""
        self._start_turn(text=text)

    def speak(self, text: str) -> asyncio.Task[None] | None:
        """Say ``text`` as it is, no dialogue (an operator's line, a line while the caller
        waits); the task ends when it has played. None once the call is closed."""
        if self.closed.is_set():
            return None
        self._start_turn(text=text, verbatim=True)
        return self._turn_task

    def operator_spoke(self, audio: np.ndarray, *, rate: int) -> None:
        """An operator's talk spurt (``rate`` Hz int16) ended: transcribed in this call's
        lane, it is captioned, remembered by the agent and recorded (a ``reply_text`` event
        while the operator has the call)."""
        if not self.closed.is_set() and len(audio):
            self._spawn(self._operator_line(audio, rate))

    async def _operator_line(self, audio: np.ndarray, rate: int) -> None:
        samples = resample_int16(audio, rate, SPEECH_RATE)
        end = self.clock.now()
        utterance = Utterance(
            samples, end - len(samples) / SPEECH_RATE, end, language=self.handoff.language
        )
        transcript = await self._operator_asr.transcribe(utterance)
        text = transcript.text.strip()
        if not text:
            return
        self.handoff.operator_said(text)
        self.emit(
            ReplyText(
                text=text,
                language=transcript.language,
                turn=self._turn,
                index=0,
                speaker="operator",
            )
        )

    def _busy(self) -> bool:
        return self._turn_running() or self.player.speaking(self.clock.now())

    def interrupt(self) -> None:
        """Cancel the current turn and flush queued reply audio and video."""
        cancelled = self._cancel_turn()
        dropped = self.player.flush()
        if cancelled or dropped > 0:
            self.metrics.barge_ins_total.inc()
            self.emit(BargeIn(turn=self._turn, dropped_s=round(dropped, 3)))
            self.emit(StateChanged(state="listening"))

    def _start_turn(
        self,
        *,
        text: str | None = None,
        utterance: Utterance | None = None,
        greeting: bool = False,
        verbatim: bool = False,
        early_transcript: asyncio.Task[Transcript] | None = None,
    ) -> None:
        if self.handoff.listen_only and not (greeting or verbatim):
            self._overhear(text, utterance, early_transcript)
            return
        self._cancel_turn()
        self.player.flush()
        self._turn += 1
        end = utterance.end_s if utterance is not None else self.clock.now()
        req = TurnRequest(
            turn=self._turn,
            speech_end=end,
            utterance=utterance,
            text=text,
            greeting=greeting,
            verbatim=verbatim,
            language=self.options.language,
            early_transcript=early_transcript,
        )
        self._turn_task = self._spawn(self._run_turn(req))

    def _overhear(
        self,
        text: str | None,
        utterance: Utterance | None,
        early_transcript: asyncio.Task[Transcript] | None,
    ) -> None:
        """A person has the call: transcribe the caller for them, beside any line playing."""
        self._turn += 1
        end = utterance.end_s if utterance is not None else self.clock.now()
        req = TurnRequest(
            turn=self._turn,
            speech_end=end,
            utterance=utterance,
            text=text,
            language=self.options.language,
            early_transcript=early_transcript,
            listen_only=True,
        )
        self._spawn(self._run_listen_only(req))

    async def _run_listen_only(self, req: TurnRequest) -> None:
        try:
            await self._runner.run(req)
        except Exception as exc:
            log.exception("session %s: transcribing turn %d failed", self.id, req.turn)
            self.emit(ErrorEvent(reason=f"transcription failed: {type(exc).__name__}"))

    def _turn_running(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    def _cancel_turn(self) -> bool:
        task = self._turn_task
        self._turn_task = None
        if task is not None and not task.done():
            task.cancel()
            self._cancelled.append(self.clock.now())  # a reply cut off: a sign of a flood
            return True
        return False

    async def _run_turn(self, req: TurnRequest) -> None:
        try:
            timings = await self._runner.run(req)
            self.metrics.observe_turn(timings)
            await self.clock.sleep_until(self.player.busy_until)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s: turn %d failed", self.id, req.turn)
            self.metrics.errors_total.labels(kind="turn").inc()
            self.emit(ErrorEvent(reason=f"reply failed: {type(exc).__name__}"))
        self.emit(StateChanged(state="listening"))

    async def say_goodbye(self, text: str, *, timeout_s: float = 10.0) -> None:
        """Say ``text`` (cancelling any reply) and wait until it has played, bounded."""
        if self.closed.is_set() or self.pc.connectionState != "connected":
            return
        self._start_turn(text=text, verbatim=True)
        task = self._turn_task
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout_s)

    def sync_metrics(self) -> None:
        """Bring the call's gauges that are read on scrape up to date (the path's round
        trip, as the quality loop's queue probe measures it, and the queue its voice met,
        from the caller's transport feedback)."""
        probe = self.quality.probe if self.quality is not None else None
        if probe is not None and (rtt := probe.baseline) is not None:
            self.metrics.path_rtt.labels(session=self.id).set(rtt)
        feedback = self.quality.feedback if self.quality is not None else None
        if feedback is not None and feedback.stats.feedbacks:
            self.metrics.path_queue.labels(session=self.id).set(feedback.stats.last_queue_s)

    def _on_quality(self, change: QualityChange) -> None:
        self.metrics.quality_rung.labels(session=self.id).set(change.index)
        self.emit(
            QualityChanged(
                rung=change.index,
                height=change.height,
                fps=change.rung.fps,
                bitrate=change.bitrate,
                reason=change.reason,
            )
        )

    def _on_frame(self, t: float, is_reply_frame: bool) -> None:
        self.metrics.frames_total.labels(outcome="reply" if is_reply_frame else "idle").inc()
        dropped = self.video_track.frames_dropped
        if dropped > self._dropped_seen:
            self.metrics.frames_total.labels(outcome="dropped").inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    # ---- media in ---------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._listen(track))

    async def _listen(self, track: MediaStreamTrack) -> None:
        ingest = MicIngest(track)
        try:
            await self._hear(ingest)
        finally:  # hung up or the track ended: its receive task ends too, never left pending
            await ingest.close()

    async def _hear(self, ingest: MicIngest) -> None:
        async for frame in ingest:
            now = self.clock.now()
            for tap in tuple(self.mic_taps):
                tap(frame, now)
            self._last_seen = now  # mic media is a sign of life
            began = time.perf_counter()
            try:
                events = self._segmenter.push(frame, now)
            except Exception:
                log.exception("session %s: speech segmenter failed; resetting it", self.id)
                self.metrics.errors_total.labels(kind="vad").inc()
                self._segmenter = Segmenter(self.options.segmenter)
                continue
            self.metrics.stage_seconds.labels(stage="vad").observe(time.perf_counter() - began)
            if self._prefetch is not None:
                self._prefetch.observe(self._segmenter.current_speech, now)
            seg = self._segmenter
            self._early.observe(
                speaking=seg.speaking,
                voiced=seg.voiced_frames,
                trailing=seg.trailing_silence_frames,
                speech=seg.current_speech,
                now=now,
            )
            if self._early.turn_over(speaking=seg.speaking, trailing=seg.trailing_silence_frames):
                events = [*events, *seg.end_now(now)]  # a finished sentence: no need to wait
            for event in events:
                if isinstance(event, SpeechStarted):
                    self.emit(SpeechEvent(event="started", t=round(event.t, 3)))
                    live = self.handoff.voice_live  # a person's voice is not cut off
                    if not live and (self.player.speaking(now) or self._turn_running()):
                        self.interrupt()
                elif isinstance(event, UtteranceReady):
                    self.emit(SpeechEvent(event="ended", t=round(event.end_s, 3)))
                    utt = Utterance(samples=event.samples, start_s=event.start_s, end_s=event.end_s)
                    early = self._early.take() if event.complete else None
                    if early is None:
                        self._early.drop()
                    self._start_turn(utterance=utt, early_transcript=early)
                elif isinstance(event, SpeechDropped):
                    self._early.drop()
                    self.emit(SpeechEvent(event="ended", t=round(event.t, 3)))

    # ---- lifetime ---------------------------------------------------------------------
    async def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc or (self._resuming.locked() and pc.connectionState == "closed"):
            return  # a replaced peer connection closing (a resume closes it first)
        state = pc.connectionState
        if state == "connected":
            self._media_lost_at = None
            self._connected_once = True
            self.touch()
            if not self._greeted and self.options.greet:
                self._greeted = True
                self._start_turn(greeting=True)
        elif state in ("failed", "closed") and self._media_lost_at is None:
            log.info("session %s: peer connection %s; waiting for a resume", self.id, state)
            self._media_lost_at = self.clock.now()

    def liveness(self, now: float) -> str | None:
        """Why the call should end at ``now`` (None: it lives); an attached control socket
        counts as a sign of life."""
        if self._ws_attached:
            self._last_seen = now
        if now - self._last_seen > self.options.heartbeat_timeout_s:
            return "no sign of life (heartbeat timeout)"
        if not self._connected_once and self._connect_by is not None and now > self._connect_by:
            return "media never connected (connect timeout)"
        if (
            self._media_lost_at is not None
            and now - self._media_lost_at > self.options.resume_grace_s
        ):
            return "media connection lost and not resumed"
        return None

    async def _watchdog(self) -> None:
        period = min(1.0, self.options.heartbeat_timeout_s / 8, self.options.connect_timeout_s / 4)
        while not self.closed.is_set():
            await asyncio.sleep(period)
            self._bound_media()
            reason = self.liveness(self.clock.now())
            if reason is not None:
                log.info("session %s: closing: %s", self.id, reason)
                self.close_reason = reason
                await self.close(outcome=f"timeout: {reason}")
                return

    def _bound_media(self) -> None:
        """A flood (replies cut off one after another by new turns or barge-ins, typed or
        noise) that has spent half its budget of stage work plays at a low rung until it has
        cut none off for ``_FLOOD_WINDOW_S``: it renders fewer, smaller frames, and its video
        encoding, which no lane budgets, stays bounded too. A call whose replies play out is
        never held, however busy the machine (its budget counts wall time)."""
        if self.quality is None:
            return
        now = self.clock.now()
        self._cancelled = [t for t in self._cancelled if now - t <= _FLOOD_WINDOW_S]
        burst = self.lane.executor.options.burst_s
        if len(self._cancelled) >= _FLOOD_CUTS and self.lane.budget() < burst / 2:
            self._over_share = True
        elif not self._cancelled:
            self._over_share = False
        rung = min(_OVER_SHARE_RUNG, len(self.quality.controller.ladder) - 1)
        self.quality.limit(rung if self._over_share else None, "over its share of the CPU")

    # ---- faults -----------------------------------------------------------------------
    async def _restart_renderer(self) -> Renderer:
        self._services.renderers.release(self.id)
        return await self._services.renderer_for(self.options.avatar, session=self.id)

    def _on_render_failure(self, exc: BaseException) -> None:
        self.metrics.errors_total.labels(kind="render").inc()
        self.emit(ErrorEvent(reason=f"renderer failed ({type(exc).__name__}); restarting it"))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # contained: logged and counted, never raised into another call
            log.error("session %s: task failed", self.id, exc_info=exc)
            self.metrics.errors_total.labels(kind="task").inc()
            self.emit(ErrorEvent(reason=f"internal error ({type(exc).__name__})"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.lane.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def close(self, outcome: str = "completed") -> None:
        """Hang up: stop the turn, the listener and the tracks, close the peer connection.

        The work runs in a task of its own, so a caller that is itself cancelled (a
        WebSocket handler whose client went away) cannot leave the call half closed.
        """
        if self._closing is None:
            self.closed.set()
            self.observers.ended(self.id, time.time(), outcome)
            if self._on_closed is not None:
                self._on_closed(self)
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        self._cancel_turn()
        self.player.flush()
        for task in list(self._tasks):
            task.cancel()
        if self.quality is not None:
            await self.quality.stop()
            with contextlib.suppress(KeyError):
                self.metrics.quality_rung.remove(self.id)
            for gauge in (self.metrics.path_rtt, self.metrics.path_queue):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.id)
        await self.supervisor.close()
        if self._prefetch is not None:
            await self._prefetch.close()
        await self._early.close()
        self.lane.close()  # queued blocking work is dropped, not finished
        self._services.renderers.release(self.id)  # its place on a render scheduler
        self.audio_track.stop()
        self.video_track.stop()
        self.emit(StateChanged(state="closed"))
        for pc in [self.pc, *(self.open_peers - {self.pc})]:  # a replaced one still closing
            await self._close_peer(pc)


class _MetricsObserver:
    """Feeds a turn's stage durations and batch sizes into the process metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def stage(self, name: str, seconds: float) -> None:
        self._metrics.stage_seconds.labels(stage=name).observe(seconds)

    def batch(self, frames: int) -> None:
        self._metrics.batch_size.observe(frames)
