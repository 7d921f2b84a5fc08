"""Early ASR: transcribe during the end-of-speech silence window instead of after it.

The segmenter ends an utterance only after ``end_silence_ms`` of silence (500 ms by default).
When the caller pauses for ``pause_ms`` (160 ms), the speech so far is transcribed in the
background; if no voiced frame follows before the utterance ends, that transcript *is* the
utterance's (the final audio only adds silence), and the turn starts from it without a second
ASR pass. Voice after the pause drops the early attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inference.asr.base import Asr
from inference.types import SPEECH_RATE, Transcript, Utterance

__all__ = ["EarlyAsr", "EarlyAsrOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyAsrOptions:
    pause_ms: int = 160  # silence inside speech that starts an early transcription
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.pause_ms < 20:
            raise ValueError("pause_ms must be at least one 20 ms frame")


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
