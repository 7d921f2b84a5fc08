"""TurnRunner with fake stages, a real AvPlayer and a manual clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import DEFAULT_AVATAR_NAME, PreparedAvatar
from inference.cache import CacheOptions, TieredCache
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.render.base import Renderer
from inference.render.cached import CachedRenderer
from inference.render.warp import WarpOptions, WarpRenderer
from inference.tts import FakeTts, FakeTtsOptions
from inference.types import ReplySentence, Transcript, Utterance
from media.clock import ManualClock
from media.player import AvPlayer
from signaling.call.events import ControlEvent, ReplyText, StateChanged, Timings, TranscriptEvent
from signaling.call.supervise import SupervisedRenderer
from signaling.call.turn import TurnRequest, TurnRunner, detect_language
from signaling.stages.services import CachePlan, Services


class RecordingRenderer:
    """Frames whose first pixel counts the frame; remembers seeks and audio lengths."""

    fps = 25

    def __init__(self, *, short_by: int = 0, batch: int = 5) -> None:
        self.seeks: list[int] = []
        self.audio_lengths: list[int] = []
        self.short_by = short_by
        self.batch = batch
        self.count = 0
        self.two_frames = asyncio.Event()  # set once two frames are out

    @property
    def frame_size(self) -> tuple[int, int]:
        return (8, 8)

    def set_output_height(self, height: int) -> None:
        pass

    def idle_frames(self) -> Sequence[np.ndarray]:
        return [np.zeros((8, 8, 3), np.uint8)]

    def seek(self, step: int) -> None:
        self.seeks.append(step)

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        self.audio_lengths.append(len(audio_16k))
        n = len(audio_16k) // 640 - self.short_by
        for start in range(0, n, self.batch):
            frames = []
            for _ in range(min(self.batch, n - start)):
                self.count += 1
                f = np.zeros((8, 8, 3), np.uint8)
                f[0, 0, 0] = self.count % 256
                frames.append(f)
            if self.count >= 2:
                self.two_frames.set()
            await asyncio.sleep(0)
            yield frames


def make_runner(
    renderer: Renderer, *, transcripts: tuple[str, ...] = ("Where is my order?",)
) -> tuple[TurnRunner, AvPlayer, list[ControlEvent], ManualClock]:
    clock = ManualClock(10.0)
    player = AvPlayer(clock=clock, fps=25, lead_s=0.12)
    events: list[ControlEvent] = []
    runner = TurnRunner(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=transcripts)),
        dialogue=ScriptedDialogue(
            ScriptedDialogueOptions(replies=("First sentence here. And a second one!",))
        ),
        tts=FakeTts(FakeTtsOptions(sample_rate=22050)),
        renderer=renderer,
        sink=player,
        emit=events.append,
        now=clock.now,
    )
    return runner, player, events, clock


def utterance() -> Utterance:
    return Utterance(samples=np.zeros(16000, np.int16), start_s=9.0, end_s=10.0)


async def test_spoken_turn_streams_events_and_aligned_media() -> None:
    renderer = RecordingRenderer()
    runner, player, events, _ = make_runner(renderer)
    marks = await runner.run(TurnRequest(turn=1, speech_end=10.0, utterance=utterance()))
    kinds = [type(e) for e in events]
    assert kinds[0] is TranscriptEvent
    assert [e.text for e in events if isinstance(e, ReplyText)] == [
        "First sentence here.",
        "And a second one!",
    ]
    states = [e.state for e in events if isinstance(e, StateChanged)]
    assert states == ["thinking", "speaking"]
    assert isinstance(events[-1], Timings)
    assert set(marks) >= {"asr_done", "first_sentence", "first_audio", "first_frame", "first_sent"}
    # Every 40 ms frame carries exactly 1,920 samples of 48 kHz audio, gapless after the
    # lead: the short one, the renderer having given 0.3 s of frames at once.
    assert player.busy_until > 10.04
    total_frames = renderer.count
    assert total_frames == sum(n // 640 for n in renderer.audio_lengths)
    assert player.busy_until == pytest.approx(10.04 + total_frames / 25, abs=1e-6)
    # Frame k of the timeline is the k-th rendered frame.
    for k in (0, 7, total_frames - 1):
        frame = player.frame_at(10.04 + (k + 0.5) / 25)
        assert frame is not None and frame[0, 0, 0] == (k + 1) % 256
    assert np.any(player.audio_at(10.04, 48000 * total_frames // 25) != 0)


async def test_speech_from_silence_seeks_the_renderer_to_the_idle_step() -> None:
    renderer = RecordingRenderer()
    runner, _, _, _ = make_runner(renderer)
    await runner.run(TurnRequest(turn=1, speech_end=10.0, text="Hello"))
    # The first chunk starts at 10.04 s: step 251 of the idle loop; the second continues.
    assert renderer.seeks == [251]


class SeekLoggingWarp(WarpRenderer):
    """The real warp renderer, noting every seek."""

    def __init__(self, avatar: PreparedAvatar, seeks: list[int]) -> None:
        super().__init__(avatar, options=WarpOptions(output_long_side=64, seed=1))
        self.seeks = seeks

    def seek(self, step: int) -> None:
        self.seeks.append(step)
        super().seek(step)


class SeekLoggingFactory:
    """A renderer factory of :class:`SeekLoggingWarp`, all noting into ``seeks``."""

    def __init__(self) -> None:
        self.seeks: list[int] = []

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        return SeekLoggingWarp(avatar, self.seeks)

    def release(self, session: str) -> None:
        pass


@pytest.mark.parametrize("clips", [True, False], ids=["cached", "uncached"])
async def test_a_live_calls_renderer_seeks_to_the_idle_step(
    fake_services: Services, clips: bool
) -> None:
    """Through the wrappers of a live call: the renderer ``Services.renderer_for`` gives (the
    clip cache over the warp renderer for a photo with clips on), supervised as ``Session``
    does."""
    factory = SeekLoggingFactory()
    services = dataclasses.replace(
        fake_services,
        renderers=factory,
        cache=TieredCache(CacheOptions()),
        cache_plan=CachePlan(clips=clips, preload=False, speculate=False),
    )

    async def restart() -> Renderer:
        return await services.renderer_for(DEFAULT_AVATAR_NAME, session="s1")

    made = await restart()
    assert isinstance(made, CachedRenderer) is clips
    renderer = SupervisedRenderer(made, restart=restart)
    runner, *_ = make_runner(renderer)
    await runner.run(TurnRequest(turn=1, speech_end=10.0, text="Hello"))
    assert factory.seeks == [251]  # talking starts where the idle loop is: 10.04 s at 25 fps


async def test_short_renderer_keeps_the_voice_and_holds_the_last_face() -> None:
    renderer = RecordingRenderer(short_by=3)
    runner, player, _, _ = make_runner(renderer)
    await runner.run(TurnRequest(turn=1, speech_end=10.0, text="Hello"))
    expected = sum(n // 640 for n in renderer.audio_lengths)
    assert player.busy_until == pytest.approx(10.04 + expected / 25, abs=1e-6)
    last = player.frame_at(player.busy_until - 0.01)
    assert last is not None and last[0, 0, 0] == renderer.count % 256


class SlowRenderer(RecordingRenderer):
    """Its second batch comes ``sleep_s`` of real time after its first, the clock moved on by
    ``advance_s``."""

    def __init__(self, clock: ManualClock, advance_s: float, sleep_s: float) -> None:
        super().__init__(batch=5)
        self.clock = clock
        self.advance_s = advance_s
        self.sleep_s = sleep_s

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        k = 0
        async for batch in super().render(audio_16k):
            if k == 1:
                self.clock.advance(self.advance_s)
                await asyncio.sleep(self.sleep_s)
            k += 1
            yield batch


@pytest.mark.parametrize(
    ("advance_s", "sleep_s", "start"),
    [(0.0, 0.01, 10.04), (0.08, 0.3, 10.12)],
    ids=["fast", "slow"],
)
async def test_a_reply_starts_sooner_when_its_frames_come_fast(
    advance_s: float, sleep_s: float, start: float
) -> None:
    """Fast frames: 0.3 s of them in hand, the reply starts after the sink's short lead (40 ms);
    a renderer slower than the difference of the leads (80 ms): the first batch starts when
    the plain lead (120 ms) would have started it, and the rest follows gaplessly."""
    renderer = RecordingRenderer()
    runner, player, _, clock = make_runner(renderer)
    renderer = SlowRenderer(clock, advance_s, sleep_s)
    runner._renderer = renderer
    marks = await runner.run(TurnRequest(turn=1, speech_end=10.0, text="Hello"))
    assert marks["first_sent"] == pytest.approx((start - 10.0) * 1000, abs=0.5)
    assert player.busy_until == pytest.approx(start + renderer.count / 25, abs=1e-6)
    assert renderer.seeks == [251]  # aligned for the short lead (10.04 s), before rendering


async def test_empty_transcript_goes_back_to_listening() -> None:
    renderer = RecordingRenderer()
    runner, player, events, _ = make_runner(renderer, transcripts=("  ",))
    await runner.run(TurnRequest(turn=1, speech_end=10.0, utterance=utterance()))
    assert [e.state for e in events if isinstance(e, StateChanged)] == ["listening"]
    assert renderer.count == 0 and player.busy_until == 0.0


async def test_cancelling_a_turn_stops_rendering() -> None:
    renderer = RecordingRenderer(batch=1)
    runner, _, _, _ = make_runner(renderer)
    task = asyncio.create_task(runner.run(TurnRequest(turn=1, speech_end=10.0, text="Hi")))
    await asyncio.wait_for(renderer.two_frames.wait(), 5.0)
    assert renderer.count >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count = renderer.count
    for _ in range(20):
        await asyncio.sleep(0.002)
    assert renderer.count == count  # nothing rendered after the cancel
    whole = RecordingRenderer(batch=1)
    await make_runner(whole)[0].run(TurnRequest(turn=1, speech_end=10.0, text="Hi"))
    assert count < whole.count  # the cancelled turn stopped short of the whole reply


def test_detect_language() -> None:
    assert detect_language("退货怎么办？") == "zh"
    assert detect_language("How do returns work?") == "en"


class _CitingDialogue:
    """Answers every question with one sentence taken from a document."""

    def greeting(self, language: str = "en") -> ReplySentence:
        return ReplySentence(text="Hello.", language=language)

    async def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        yield ReplySentence(text="Descale every 60 days.", source="care.md § Descaling")


async def test_reply_text_carries_the_source_of_the_answer() -> None:
    clock = ManualClock(10.0)
    events: list[ControlEvent] = []
    runner = TurnRunner(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("How often?",))),
        dialogue=_CitingDialogue(),
        tts=FakeTts(FakeTtsOptions(sample_rate=22050)),
        renderer=RecordingRenderer(),
        sink=AvPlayer(clock=clock, fps=25, lead_s=0.12),
        emit=events.append,
        now=clock.now,
    )
    await runner.run(TurnRequest(turn=1, speech_end=10.0, text="How often should I descale?"))
    (said,) = [e for e in events if isinstance(e, ReplyText)]
    assert said.source == "care.md § Descaling"
