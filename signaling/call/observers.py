"""Watchers of every call in a process: call records, the operator console, webhooks.

A :class:`CallObserver` hears when a call starts, each control event it emits (transcripts,
replies, timings, handoffs) and when it ends. :class:`CallObservers` fans one call's news out
to all of them; an observer that raises is logged and skipped, so a broken watcher never
reaches the call. Observers are called on the event loop and must not block: anything slow
(a database write, an HTTP request) goes to their own queue or task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from signaling.call.events import ControlEvent

__all__ = ["CallInfo", "CallObserver", "CallObservers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What is known of a call when it starts (``started_at``: Unix seconds)."""

    call_id: str
    avatar: str
    language: str
    started_at: float
    client: str = ""  # who placed it: the access scope's name, or the peer's address


class CallObserver(Protocol):
    def call_started(self, call: CallInfo) -> None: ...

    def call_event(self, call_id: str, at: float, event: ControlEvent) -> None: ...

    def call_ended(self, call_id: str, at: float, outcome: str) -> None: ...


class CallObservers:
    """Every observer of the process, called in order; failures are contained."""

    def __init__(self, observers: Sequence[CallObserver] = ()) -> None:
        self._observers = list(observers)

    def add(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    def started(self, call: CallInfo) -> None:
        for observer in self._observers:
            try:
                observer.call_started(call)
            except Exception:
                log.exception("call observer %r failed on the start of %s", observer, call.call_id)

    def event(self, call_id: str, at: float, event: ControlEvent) -> None:
        for observer in self._observers:
            try:
                observer.call_event(call_id, at, event)
            except Exception:
                log.exception("call observer %r failed on a %s event", observer, event.type)

    def ended(self, call_id: str, at: float, outcome: str) -> None:
        for observer in self._observers:
            try:
                observer.call_ended(call_id, at, outcome)
            except Exception:
                log.exception("call observer %r failed on the end of %s", observer, call_id)
