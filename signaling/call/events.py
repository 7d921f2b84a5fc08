"""Typed control events sent to the client over the call's WebSocket (see docs/protocol.md)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "BargeIn",
    "ControlEvent",
    "ErrorEvent",
    "Handoff",
    "Hello",
    "Pong",
    "QualityChanged",
    "ReplyText",
    "SpeechEvent",
    "StateChanged",
    "Timings",
    "TranscriptEvent",
    "encode_event",
]

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ControlEvent:
    type: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        return out


@dataclass(frozen=True, slots=True)
class Hello(ControlEvent):
    type: ClassVar[str] = "hello"
    session: str
    avatar: str
    fps: int
    mouth_box: list[float]


@dataclass(frozen=True, slots=True)
class StateChanged(ControlEvent):
    type: ClassVar[str] = "state"
    state: str  # listening | thinking | speaking | closed


@dataclass(frozen=True, slots=True)
class SpeechEvent(ControlEvent):
    type: ClassVar[str] = "speech"
    event: str  # started | ended
    t: float


@dataclass(frozen=True, slots=True)
class TranscriptEvent(ControlEvent):
    type: ClassVar[str] = "transcript"
    text: str
    language: str
    turn: int


@dataclass(frozen=True, slots=True)
class ReplyText(ControlEvent):
    """One sentence of the reply; ``source`` (sent only when set) cites the document the
    answer was taken from, for the caption; ``speaker`` (sent only when set) is
    ``"operator"`` for what an operator said in their own voice."""

    type: ClassVar[str] = "reply_text"
    text: str
    language: str
    turn: int
    index: int
    source: str | None = None
    speaker: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = ControlEvent.to_json(self)
        for key in ("source", "speaker"):
            if out[key] is None:
                del out[key]
        return out


@dataclass(frozen=True, slots=True)
class BargeIn(ControlEvent):
    type: ClassVar[str] = "barge_in"
    turn: int
    dropped_s: float


@dataclass(frozen=True, slots=True)
class Timings(ControlEvent):
    type: ClassVar[str] = "timings"
    turn: int
    stages: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QualityChanged(ControlEvent):
    """The outgoing video moved to another rung of the quality ladder (0 = top)."""

    type: ClassVar[str] = "quality"
    rung: int
    height: int
    fps: int
    bitrate: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Handoff(ControlEvent):
    """The call is being put through to a person. ``state``: ``waiting`` (in the queue;
    ``wait_s`` is the expected wait), ``connected`` (a person has the call), ``returned``
    (back to the assistant), ``timeout`` (nobody came; a callback or email was offered)."""

    type: ClassVar[str] = "handoff"
    state: str
    reason: str = ""
    wait_s: float | None = None
    language: str = "en"


@dataclass(frozen=True, slots=True)
class Pong(ControlEvent):
    type: ClassVar[str] = "pong"
    t: float | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent(ControlEvent):
    type: ClassVar[str] = "error"
    reason: str


def encode_event(event: ControlEvent) -> str:
    """The event as strict JSON text: ValueError on NaN or Infinity (JSON has neither), and
    any lone surrogate replaced by U+FFFD so the text encodes as UTF-8."""
    text = json.dumps(event.to_json(), ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub("\ufffd", text)
