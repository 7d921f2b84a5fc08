"""The value types of call records: what is written (operations) and what is read back
(a call's summary, its events, a query), and the conversion of a control event to a row."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from signaling.call.events import ControlEvent
from signaling.call.observers import CallInfo

__all__ = [
    "ABNORMAL",
    "IN_PROGRESS",
    "Action",
    "CallQuery",
    "CallRecord",
    "CallSummary",
    "CloseAbandoned",
    "Ended",
    "Event",
    "EventRecord",
    "EventRow",
    "Heartbeat",
    "Operation",
    "Purge",
    "Started",
    "event_row",
    "iso_time",
    "parse_time",
]

ABNORMAL = "ended-abnormally"  # no end row, and the process that held the call is gone
IN_PROGRESS = "in-progress"  # no end row yet; its process is alive
# Events of a call that are not kept: the socket greeting, keep-alives, UI state changes.
SKIPPED = frozenset({"hello", "pong", "state"})
_SPEAKERS = {"transcript": "caller", "reply_text": "agent"}
_TEXT_BAD = re.compile("[\x00\ud800-\udfff]")  # NUL (PostgreSQL refuses it), lone surrogates
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Started:
    call: CallInfo
    node: str


@dataclass(frozen=True, slots=True)
class Event:
    call_id: str
    at: float
    event: ControlEvent


@dataclass(frozen=True, slots=True)
class Ended:
    call_id: str
    at: float
    outcome: str


@dataclass(frozen=True, slots=True)
class Action:
    """Something a person did to a call (an operator took it over, a supervisor noted it)."""

    call_id: str
    at: float
    actor: str
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The process ``node`` is alive at ``at`` (its open calls are in progress)."""

    node: str
    at: float


@dataclass(frozen=True, slots=True)
class CloseAbandoned:
    """Give every open call whose process was last seen before ``seen_before`` its end."""

    seen_before: float


@dataclass(frozen=True, slots=True)
class Purge:
    """Delete the calls that started before ``before``."""

    before: float


Operation = Started | Event | Ended | Action | Heartbeat | CloseAbandoned | Purge


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event: ``who`` and ``text`` for what was said, ``data`` for the rest."""

    kind: str
    turn: int | None
    who: str | None
    text: str | None
    language: str | None
    data: str  # JSON object


def clean_text(text: str) -> str:
    return _TEXT_BAD.sub("\ufffd", text)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON lacks) as None, containers walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)


def to_json_text(data: Mapping[str, Any]) -> str:
    try:
        text = _JSON.encode(data)
    except ValueError:  # NaN or an infinity somewhere
        text = _JSON.encode(_finite(data))
    return clean_text(text)


def event_row(event: ControlEvent) -> EventRow | None:
    """The row an event is stored as (None for the kinds not kept). Kinds this module does
    not know keep their whole payload in ``data``."""
    if event.type in SKIPPED:
        return None
    payload = event.to_json()
    payload.pop("type", None)
    text = payload.pop("text", None) if event.type in _SPEAKERS else None
    speaker = payload.pop("speaker", None)
    turn = payload.get("turn")
    language = payload.get("language")
    return EventRow(
        kind=event.type,
        turn=turn if isinstance(turn, int) and not isinstance(turn, bool) else None,
        who=speaker if isinstance(speaker, str) else _SPEAKERS.get(event.type),
        text=clean_text(text) if isinstance(text, str) else None,
        language=language if isinstance(language, str) else None,
        data=to_json_text(payload),
    )


def action_row(action: Action) -> EventRow:
    return EventRow(
        kind="action",
        turn=None,
        who=clean_text(action.actor),
        text=clean_text(action.action),
        language=None,
        data=to_json_text(action.detail),
    )


@dataclass(frozen=True, slots=True)
class CallSummary:
    call_id: str
    avatar: str
    language: str
    client: str
    started_at: float
    ended_at: float | None
    outcome: str
    turns: int

    def to_json(self) -> dict[str, Any]:
        duration = None if self.ended_at is None else round(self.ended_at - self.started_at, 3)
        return {
            "id": self.call_id,
            "avatar": self.avatar,
            "language": self.language,
            "client": self.client,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": duration,
            "outcome": self.outcome,
            "turns": self.turns,
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    at: float
    kind: str
    turn: int | None
    who: str | None
    text: str | None
    language: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "type": self.kind}
        for key in ("turn", "who", "text", "language"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.data:
            out["data"] = self.data
        return out


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call in full: its summary and every stored event, oldest first."""

    call: CallSummary
    events: tuple[EventRecord, ...]

    def transcript(self) -> list[dict[str, Any]]:
        """Who said what: the caller's turns, the agent's replies (sentences joined) and an
        operator's lines said in their own voice."""
        lines: list[dict[str, Any]] = []
        for e in self.events:
            if e.kind not in _SPEAKERS or e.who is None or e.text is None:
                continue
            last = lines[-1] if lines else None
            if last and e.who == "agent" == last["who"] and last["turn"] == e.turn:
                last["text"] = f"{last['text']} {e.text}"
                continue
            lines.append(
                {"at": e.at, "who": e.who, "turn": e.turn, "language": e.language, "text": e.text}
            )
        return lines

    def recording(self) -> dict[str, Any] | None:
        """The call's media recording (``records.media``): its file under the data folder
        and how it ended, from the last ``recording`` action; None when it was not recorded."""
        for e in reversed(self.events):
            if e.kind == "action" and e.text == "recording":
                return e.data
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.call.to_json(),
            "recording": self.recording(),
            "transcript": self.transcript(),
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CallQuery:
    """Which calls to list: started in [since, until), the outcome (exact, or the part
    before its ':' as in ``timeout``), words said by either side, a page of them."""

    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    text: str | None = None
    limit: int = 50
    offset: int = 0
    oldest_first: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if self.offset < 0:
            raise ValueError("offset must not be negative")


def parse_time(text: str, *, now: float) -> float:
    """Unix seconds from an ISO 8601 date or time (UTC unless it says otherwise), Unix
    seconds, or a time ago such as ``90m``, ``24h``, ``7d``, ``2w``."""
    value = text.strip()
    ago = _RELATIVE.match(value.lower())
    if ago:
        return now - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"not a time: {text!r} (ISO 8601 such as 2026-05-01 or 2026-05-01T09:30Z, "
            "Unix seconds, or a time ago such as 24h or 7d)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_time(seconds: float | None) -> str:
    """Unix seconds as ISO 8601 UTC to the millisecond ('' for None)."""
    if seconds is None:
        return ""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
