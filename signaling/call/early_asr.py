"""Early ASR: transcribe during the end-of-speech silence window instead of after it.

The segmenter ends an utterance only after ``end_silence_ms`` of silence (500 ms by default,
plus webrtcvad's own hangover of ~100-200 ms). When the caller pauses for ``pause_ms``
(160 ms, as ``media.vad.Segmenter.trailing_silence_frames`` counts silence), the speech so
far is transcribed in the background; if no voiced frame follows before the utterance ends,
that transcript *is* the utterance's (the final audio only adds silence), and the turn starts
from it without a second ASR pass. Voice after the pause drops the early attempt.

Adaptive end of turn: when the early transcript is ready, confident and reads as a finished
sentence (:func:`reads_finished`), the caller's turn may end after ``end_after_ms`` of
silence instead of the segmenter's full window (:meth:`EarlyAsr.turn_over`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inference.asr.base import Asr
from inference.types import SPEECH_RATE, Transcript, Utterance

__all__ = ["EarlyAsr", "EarlyAsrOptions", "reads_finished"]

_FINAL_MARKS = frozenset(".?!。？！")
_FINAL_PARTICLES = frozenset("吗呢吧啊呀了")  # a Mandarin sentence that ends on one is done
_DANGLING = frozenset(
    "a an and are because but for i if is my of or so the to um uh with your".split()
)
# a Mandarin question that ends on its question word is done, marked or not ("发货要多久")
_QUESTION_ENDINGS_ZH = (
    "多久", "几点", "几天", "几号", "多少", "多少钱", "多长时间", "什么", "什么时候",
    "怎么办", "怎么样", "怎么弄", "哪里", "哪儿", "在哪", "为什么", "是不是", "有没有",
)  # fmt: skip
_DANGLING_ZH = ("的", "和", "跟", "还有", "但是", "然后", "因为", "所以", "如果", "就是", "那个")


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyAsrOptions:
    """``pause_ms``: silence inside speech that starts an early transcription;
    ``end_after_ms``: silence after which a finished early transcript ends the turn (0: the
    segmenter's own end of speech only); ``min_confidence``: for that adaptive end."""

    pause_ms: int = 160
    enabled: bool = True
    end_after_ms: int = 300
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.pause_ms < 20:
            raise ValueError("pause_ms must be at least one 20 ms frame")
        if self.end_after_ms < 0:
            raise ValueError("end_after_ms must be >= 0")


def reads_finished(text: str) -> bool:
    """Whether a transcript reads as a finished sentence: it ends on a full stop, question or
    exclamation mark (not an ellipsis), a Mandarin final particle or question word ("多久",
    "什么时候": Whisper often leaves Mandarin unpunctuated), and not on a word that needs
    more ("and", "the", "my", "的", "因为")."""
    text = text.strip()
    if not text or text.endswith(("...", "…")):
        return False
    body = text.rstrip("".join(_FINAL_MARKS) + " ")
    if not body or body.endswith(_DANGLING_ZH):
        return False
    words = body.lower().split()
    if words and words[-1].strip(",;:") in _DANGLING:
        return False
    return (
        text[-1] in _FINAL_MARKS
        or body[-1] in _FINAL_PARTICLES
        or body.endswith(_QUESTION_ENDINGS_ZH)
    )


class EarlyAsr:
    """One call's early transcriber. Feed it the segmenter state after every mic frame."""

    def __init__(
        self,
        asr: Asr,
        *,
        options: EarlyAsrOptions | None = None,
        spawn: Callable[..., asyncio.Task[Transcript]] = asyncio.ensure_future,
    ) -> None:
        self._asr = asr
        self.options = options or EarlyAsrOptions()
        self._spawn = spawn
        self._task: asyncio.Task[Transcript] | None = None
        self._voiced_at = -1
        self.started = 0  # early transcriptions begun
        self.used = 0  # ... that became a turn's transcript

    @property
    def pending(self) -> bool:
        """An early transcription is under way (started, not finished)."""
        return self._task is not None and not self._task.done()

    def observe(
        self,
        *,
        speaking: bool,
        voiced: int,
        trailing: int,
        speech: Callable[[], np.ndarray | None],
        now: float,
    ) -> None:
        """After each frame: start on a pause, drop the attempt when the voice comes back."""
        if not self.options.enabled:
            return
        if self._task is not None and (not speaking or voiced != self._voiced_at):
            if speaking:  # more voice after the pause: the early text is stale
                self.drop()
            return
        pause_frames = self.options.pause_ms // 20
        if speaking and self._task is None and trailing == pause_frames:
            audio = speech()
            if audio is None:
                return
            self._voiced_at = voiced
            utterance = Utterance(samples=audio, start_s=now - len(audio) / SPEECH_RATE, end_s=now)
            self._task = self._spawn(self._asr.transcribe(utterance))
            self.started += 1

    def turn_over(self, *, speaking: bool, trailing: int) -> bool:
        """Whether the caller's turn may end now: ``trailing`` silent frames reach
        ``end_after_ms`` and the early transcript is ready, confident and finished."""
        opts = self.options
        task = self._task
        if not speaking or not opts.end_after_ms or task is None or not task.done():
            return False
        if trailing * 20 < opts.end_after_ms or task.cancelled() or task.exception():
            return False
        heard = task.result()
        return heard.confidence >= opts.min_confidence and reads_finished(heard.text)

    def take(self) -> asyncio.Task[Transcript] | None:
        """The early transcription for the utterance that just ended, if it still holds."""
        task, self._task = self._task, None
        if task is not None:
            self.used += 1
        return task

    def drop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
