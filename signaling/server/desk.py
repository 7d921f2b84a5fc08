"""The operator desk: this process's live calls as the operator console shows them (their
transcripts so far, who has them), the handoff queue, the console's live feeds, and what
operators do to a call (take over, say a line, hand back).

The desk is a :class:`~signaling.call.observers.CallObserver`: it learns everything from the
calls' own events, so it never reaches into a call's turn. Each action is logged and, when
the app keeps call records, written there with the operator as the actor.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from signaling.call.events import ControlEvent, Handoff, ReplyText, TranscriptEvent
from signaling.call.handoff import HandoffConflict
from signaling.call.observers import CallInfo
from signaling.call.session import Session
from signaling.server.operators import Operator
from signaling.server.webhook import HandoffWebhook

__all__ = ["ActionLog", "DeskError", "Line", "LiveCall", "OperatorDesk"]

log = logging.getLogger(__name__)

_MAX_LINES = 200  # transcript lines kept per live call
_FEED_SIZE = 1000  # messages a console may fall behind by before it is cut off
_SURROGATE = re.compile("[\ud800-\udfff]")


class ActionLog(Protocol):
    """Where operators' actions are recorded (the call records store)."""

    def record_action(
        self, call_id: str, at: float, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None: ...


class DeskError(Exception):
    """An action refused: ``status`` is the HTTP answer (400, 404, 409)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Line:
    """One thing said on a call: ``who`` is ``caller``, ``agent`` or ``operator``."""

    who: str
    text: str
    language: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"who": self.who, "text": self.text, "language": self.language, "at": self.at}


@dataclass
class LiveCall:
    """A live call as the console sees it. ``mode``: ``agent``, ``waiting`` or ``operator``."""

    info: CallInfo
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=_MAX_LINES))
    mode: str = "agent"
    operator: str | None = None
    waiting_since: float | None = None
    reason: str = ""

    def to_json(self, *, lines: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.info.call_id,
            "avatar": self.info.avatar,
            "language": self.info.language,
            "client": self.info.client,
            "started_at": self.info.started_at,
            "mode": self.mode,
            "operator": self.operator,
            "waiting_since": self.waiting_since,
            "reason": self.reason,
        }
        if lines:
            out["transcript"] = [line.to_json() for line in self.lines]
        return out


class OperatorDesk:
    """Every live call, the queue, the consoles' feeds; the operators' actions on calls."""

    def __init__(
        self,
        sessions: Mapping[str, Session],
        *,
        webhook: HandoffWebhook | None = None,
        actions: Callable[[], ActionLog | None] = lambda: None,
        max_text_chars: int = 2000,
    ) -> None:
        self._sessions = sessions
        self.webhook = webhook
        self.actions = actions
        self._max_text = max_text_chars
        self.calls: dict[str, LiveCall] = {}
        self._feeds: set[asyncio.Queue[dict[str, Any] | None]] = set()

    # ---- what the consoles see -----------------------------------------------------------
    def queue(self) -> list[str]:
        """The calls waiting for a person, longest waiting first."""
        waiting = [c for c in self.calls.values() if c.waiting_since is not None]
        return [c.info.call_id for c in sorted(waiting, key=lambda c: c.waiting_since or 0.0)]

    def snapshot(self) -> dict[str, Any]:
        calls = [c.to_json() for c in self.calls.values()]
        return {"type": "calls", "calls": calls, "queue": self.queue()}

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A console's feed: the snapshot first, then every change (None: it fell behind)."""
        feed: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_FEED_SIZE)
        feed.put_nowait(self.snapshot())
        self._feeds.add(feed)
        return feed

    def unsubscribe(self, feed: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._feeds.discard(feed)

    def _publish(self, message: dict[str, Any]) -> None:
        for feed in list(self._feeds):
            try:
                feed.put_nowait(message)
            except asyncio.QueueFull:  # too slow: cut off (it reconnects for a new snapshot)
                self._feeds.discard(feed)
                feed.get_nowait()
                feed.put_nowait(None)

    # ---- the observer --------------------------------------------------------------------
    def call_started(self, call: CallInfo) -> None:
        live = self.calls[call.call_id] = LiveCall(info=call)
        self._publish({"type": "call", "call": live.to_json()})

    def call_event(self, call_id: str, at: float, event: ControlEvent) -> None:
        live = self.calls.get(call_id)
        if live is None:
            return
        if isinstance(event, TranscriptEvent):
            self._add_line(live, Line("caller", event.text, event.language, at))
        elif isinstance(event, ReplyText):
            who = "operator" if live.mode == "operator" else "agent"
            self._add_line(live, Line(who, event.text, event.language, at))
        elif isinstance(event, Handoff):
            self._on_handoff(live, at, event)

    def call_ended(self, call_id: str, at: float, outcome: str) -> None:
        if self.calls.pop(call_id, None) is not None:
            self._publish({"type": "ended", "call_id": call_id, "outcome": outcome})

    def _add_line(self, live: LiveCall, line: Line) -> None:
        live.lines.append(line)
        self._publish({"type": "line", "call_id": live.info.call_id, "line": line.to_json()})

    def _on_handoff(self, live: LiveCall, at: float, event: Handoff) -> None:
        if event.state == "waiting":
            live.mode, live.waiting_since, live.reason = "waiting", at, event.reason
            self._notify_webhook(live, at, event)
        elif event.state == "connected":
            live.mode, live.waiting_since = "operator", None
        else:  # returned, timeout
            live.mode, live.operator, live.waiting_since = "agent", None, None
        self._publish(
            {
                "type": "handoff",
                "state": event.state,
                "call": live.to_json(lines=False),
                "queue": self.queue(),
            }
        )

    def _notify_webhook(self, live: LiveCall, at: float, event: Handoff) -> None:
        if self.webhook is None:
            return
        payload = {
            "event": "handoff",
            "at": at,
            "reason": event.reason,
            "wait_s": event.wait_s,
            **live.to_json(),
        }
        self.webhook.send(payload)

    # ---- the operators' actions ----------------------------------------------------------
    def _session(self, call_id: str) -> tuple[Session, LiveCall]:
        session = self._sessions.get(call_id)
        live = self.calls.get(call_id)
        if session is None or live is None or session.closed.is_set():
            raise DeskError(404, f"no live call {call_id!r}: it has ended or never existed")
        return session, live

    def take(self, call_id: str, operator: Operator) -> dict[str, Any]:
        """``operator`` takes the call over: 404 no such live call, 409 someone has it."""
        session, live = self._session(call_id)
        waited = None if live.waiting_since is None else time.time() - live.waiting_since
        before, live.operator = live.operator, operator.actor
        try:
            session.handoff.take_over(operator.actor)
        except HandoffConflict as exc:
            live.operator = before
            raise DeskError(409, exc.reason) from None
        self.record(call_id, operator, "take_over", {"waited_s": waited})
        return live.to_json()

    def say(self, call_id: str, operator: Operator, text: str) -> None:
        """The avatar says ``text`` for ``operator``: 400 bad text, 404, 409 not theirs."""
        text = text.strip() if isinstance(text, str) else ""
        if not text or len(text) > self._max_text or _SURROGATE.search(text):
            raise DeskError(400, f"text must be 1 to {self._max_text} characters of Unicode")
        session, _ = self._session(call_id)
        try:
            session.handoff.say(operator.actor, text)
        except HandoffConflict as exc:
            raise DeskError(409, exc.reason) from None
        self.record(call_id, operator, "say", {"text": text})

    def holder(self, call_id: str, operator: Operator) -> Session:
        """The live call ``operator`` has taken over: 404 no such call, 409 not theirs."""
        session, _ = self._session(call_id)
        try:
            session.handoff.check_holder(operator.actor)
        except HandoffConflict as exc:
            raise DeskError(409, exc.reason) from None
        return session

    def hand_back(self, call_id: str, operator: Operator) -> None:
        """The call goes back to the agent: 404, 409 not taken over by ``operator``."""
        session, _ = self._session(call_id)
        try:
            session.handoff.hand_back(operator.actor)
        except HandoffConflict as exc:
            raise DeskError(409, exc.reason) from None
        self.record(call_id, operator, "hand_back", {})

    def record(
        self, call_id: str, operator: Operator | str, action: str, detail: Mapping[str, Any]
    ) -> None:
        """Log an operator's ``action`` on a call and write it to the call records."""
        at = time.time()
        actor = operator.actor if isinstance(operator, Operator) else operator
        log.info("operator %s: %s on call %s", actor, action, call_id)
        store = self.actions()
        if store is None:
            return
        try:
            store.record_action(call_id, at, actor, action, detail)
        except Exception:
            log.exception("recording the operator action %s on %s failed", action, call_id)
