"""A scripted ASR for tests: returns prepared transcripts in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from inference.asr.base import Asr
from inference.registry import Backend, BackendSettings
from inference.types import Transcript, Utterance

__all__ = ["BACKEND", "ScriptedAsr", "ScriptedAsrOptions", "ScriptedAsrSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedAsrOptions:
    """``transcripts`` are returned in turn (cycling when ``repeat``), after ``delay_s``."""

    transcripts: tuple[Transcript | str, ...] = ("What are your opening hours?",)
    delay_s: float = 0.0
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.transcripts:
            raise ValueError("transcripts must not be empty")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")


class ScriptedAsr:
    """Returns the scripted transcripts; records the utterances it got in :attr:`heard`."""

    def __init__(self, options: ScriptedAsrOptions | None = None) -> None:
        self._options = options or ScriptedAsrOptions()
        self._turn = 0
        self.heard: list[Utterance] = []

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """The next scripted transcript; RuntimeError when the script is used up."""
        opts = self._options
        if self._turn >= len(opts.transcripts) and not opts.repeat:
            raise RuntimeError(
                f"ScriptedAsr: script of {len(opts.transcripts)} transcripts used up"
            )
        item = opts.transcripts[self._turn % len(opts.transcripts)]
        self._turn += 1
        self.heard.append(utterance)
        if opts.delay_s:
            await asyncio.sleep(opts.delay_s)
        return item if isinstance(item, Transcript) else Transcript(text=item)


class ScriptedAsrSettings(BackendSettings):
    """``asr: {backend: fake}``: the default script."""

    backend: Literal["fake"] = "fake"

    def options(self) -> ScriptedAsrOptions:
        return ScriptedAsrOptions()


BACKEND: Backend[Asr] = Backend(
    name="fake", options=ScriptedAsrOptions, make=ScriptedAsr, settings=ScriptedAsrSettings
)
