"""A call's blocking stage work stays in its lane: superseded replies leave nothing behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

import numpy as np
import pytest

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.tts.piper_tts import PiperTts, PiperTtsOptions
from inference.work import FairExecutor, FairExecutorOptions, WorkLane
from media.clock import ManualClock
from media.player import AvPlayer
from signaling.call.turn import TurnRequest, TurnRunner

REPLY = (
    "Our customer service is open Monday to Friday from eight to eight. "
    "On Saturdays we are open from nine to five, and on Sundays we rest."
)


class CountingPiper(PiperTts):
    """The real piper voice, counting the syntheses that start and run at once."""

    def __init__(self, inner: PiperTts) -> None:
        self.__dict__.update(inner.__dict__)
        self.started = 0
        self.running = 0
        self.most_at_once = 0
        self._count = threading.Lock()

    def synthesize_blocking(self, text: str) -> np.ndarray:
        with self._count:
            self.started += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super().synthesize_blocking(text)
        finally:
            with self._count:
                self.running -= 1


class SilentRenderer:
    """Empty frames at once (the speech is what this test is about)."""

    fps = 25

    @property
    def frame_size(self) -> tuple[int, int]:
        return (8, 8)

    def set_output_height(self, height: int) -> None:
        pass

    def idle_frames(self) -> Sequence[np.ndarray]:
        return [np.zeros((8, 8, 3), np.uint8)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        n = len(audio_16k) // 640
        for start in range(0, n, 5):
            yield [np.zeros((8, 8, 3), np.uint8)] * min(5, n - start)


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    return PiperTts.load(PiperTtsOptions(noise_scale=0.0, noise_w_scale=0.0))


@pytest.fixture
def lane() -> Iterator[WorkLane]:
    executor = FairExecutor(FairExecutorOptions(workers=4))
    yield executor.lane("call")
    executor.shutdown()


def _runner(tts: PiperTts) -> TurnRunner:
    clock = ManualClock(10.0)
    return TurnRunner(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("hours?",))),
        dialogue=ScriptedDialogue(ScriptedDialogueOptions(replies=(REPLY,))),
        tts=tts,
        renderer=SilentRenderer(),
        sink=AvPlayer(clock=clock, fps=25, lead_s=0.12),
        emit=lambda event: None,
        now=clock.now,
    )


async def test_a_reply_superseded_ten_times_leaves_no_blocking_work(
    piper: PiperTts, lane: WorkLane
) -> None:
    tts = CountingPiper(piper)
    runner = _runner(tts)
    turn: asyncio.Task[dict[str, float]] | None = None
    for n in range(10):  # as the session does for each new typed message
        if turn is not None:
            turn.cancel()
        request = TurnRequest(turn=n, speech_end=10.0, text=f"When are you open? ({n})")
        turn = lane.create_task(runner.run(request))
        await asyncio.sleep(0.02)
    assert turn is not None
    await turn
    await asyncio.sleep(0.05)
    # at most two syntheses at a time for the call (its lane's two slots); the superseded
    # replies' queued work was dropped (the sentences under way finished), the last reply was
    # said whole
    assert tts.most_at_once <= 2
    assert tts.started <= 2 + 2
    assert tts.running == 0 and lane.pending() == (0, 0)
