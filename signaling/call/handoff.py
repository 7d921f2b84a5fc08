"""One call's handoff to a person: the agent → waiting → operator → agent states.

:class:`CallHandoff` hears a reply's ``handoff`` intent (it is the turn's :class:`TurnHooks`),
tells the caller (a :class:`~signaling.call.events.Handoff` event), keeps them company with a
short line every ``company_every_s`` while nobody takes the call, and apologises with a
callback or email offer after ``timeout_s``. An operator who takes the call over types lines
the avatar says, one after another, in its own voice, or talks through their own peer
(``voice_live``; the voice itself is streamed by :mod:`signaling.call.live_voice`); the
caller's words go to the operator (listen-only turns) and into the dialogue's memory, so the
agent that gets the call back knows what was said.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from inference.dialogue.base import ConversationMemory
from inference.dialogue.handoff import HandoffGuardOptions
from inference.types import Intent, Transcript
from signaling.call.events import ControlEvent, Handoff

__all__ = ["CallHandoff", "HandoffConflict", "HandoffMode", "HandoffOptions"]

log = logging.getLogger(__name__)

HandoffMode = Literal["agent", "waiting", "operator"]

DEFAULT_COMPANY_LINES: tuple[tuple[str, str], ...] = (
    ("en", "Thanks for waiting. One of our team will be with you shortly."),
    ("en", "You're still in the queue. Thank you for your patience."),
    ("zh", "感谢您的耐心等待，我们的同事马上就来。"),
    ("zh", "您仍在排队中，感谢您的耐心。"),
)
DEFAULT_TIMEOUT_LINES: tuple[tuple[str, str], ...] = (
    (
        "en",
        "I'm sorry, everyone on our team is still busy. We can call you back, or you can "
        "email help at northwind goods dot com. Meanwhile, I'm happy to keep helping.",
    ),
    (
        "zh",
        "非常抱歉，我们的同事都还在忙。我们可以稍后给您回电，您也可以发邮件给我们。我也可以继续为您服务。",
    ),
)
_BUSY_POLL_S = 0.25
_BUSY_WAIT_S = 30.0  # the longest the timeout line waits for a reply in progress


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffOptions:
    """``enabled``: a handoff intent puts the call in the queue (off: it is only spoken, for
    a server nobody can take calls on; take-over works either way).
    ``company_every_s``: a company line this often while waiting (when the avatar is quiet);
    ``timeout_s``: nobody came, apologise; ``expected_wait_s``: the wait told the caller."""

    enabled: bool = False
    company_every_s: float = 20.0
    timeout_s: float = 180.0
    expected_wait_s: float = 120.0
    company_lines: tuple[tuple[str, str], ...] = DEFAULT_COMPANY_LINES
    timeout_lines: tuple[tuple[str, str], ...] = DEFAULT_TIMEOUT_LINES
    guard: HandoffGuardOptions = field(default_factory=HandoffGuardOptions)

    def __post_init__(self) -> None:
        if self.company_every_s <= 0 or self.timeout_s <= 0 or self.expected_wait_s < 0:
            raise ValueError("company_every_s and timeout_s must be > 0, expected_wait_s >= 0")
        for name in ("company_lines", "timeout_lines"):
            if not _lines(getattr(self, name), "en"):
                raise ValueError(f"{name} needs at least one 'en' line")

    def company(self, language: str) -> tuple[str, ...]:
        return _lines(self.company_lines, language) or _lines(self.company_lines, "en")

    def timeout_line(self, language: str) -> str:
        return (_lines(self.timeout_lines, language) or _lines(self.timeout_lines, "en"))[0]


def _lines(pairs: tuple[tuple[str, str], ...], language: str) -> tuple[str, ...]:
    return tuple(text for lang, text in pairs if lang == language and text.strip())


class HandoffConflict(Exception):
    """The action does not fit the call's state (``reason`` says why): HTTP 409."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class CallHandoff:
    """The handoff state of one call. ``speak`` says a line as the avatar (a task that ends
    when it has played), ``busy`` tells whether the avatar is talking or replying,
    ``interrupt`` stops the agent's reply, ``spawn`` runs the call's background tasks."""

    def __init__(
        self,
        options: HandoffOptions,
        *,
        language: str,
        speak: Callable[[str], asyncio.Task[None] | None],
        busy: Callable[[], bool],
        interrupt: Callable[[], None],
        emit: Callable[[ControlEvent], None],
        spawn: Spawn,
        now: Callable[[], float],
        memory: ConversationMemory | None = None,
    ) -> None:
        self.options = options
        self.language = language
        self.mode: HandoffMode = "agent"
        self.operator: str | None = None
        self.waiting_since: float | None = None
        self._speak, self._busy, self._interrupt = speak, busy, interrupt
        self._emit, self._spawn, self._now = emit, spawn, now
        self._memory = memory
        self._company: asyncio.Task[None] | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._voice: asyncio.Task[None] | None = None
        # an operator's live voice is on the call (their own peer): the caller talking over
        # it does not cut it, and the operator talking stops the avatar's other speech
        self.voice_live = False

    @property
    def listen_only(self) -> bool:
        """True while a person has the call: the caller's words go to them, not the agent."""
        return self.mode == "operator"

    # ---- the turn's hooks --------------------------------------------------------------
    def intent(self, intent: Intent, language: str) -> None:
        """A reply asked for something besides speech (once per turn)."""
        if intent == "handoff" and self.options.enabled:
            self.request("the caller asked for a person", language)

    def overheard(self, transcript: Transcript) -> None:
        """What the caller said while a person had the call."""
        if self._memory is not None:
            self._memory.remember("user", transcript.text)

    # ---- the states --------------------------------------------------------------------
    def request(self, reason: str, language: str | None = None) -> None:
        """Put the call in the queue for a person (nothing when it is already there)."""
        if self.mode != "agent":
            return
        self.language = language or self.language
        self.mode = "waiting"
        self.waiting_since = self._now()
        self._emit(
            Handoff(
                state="waiting",
                reason=reason,
                wait_s=self.options.expected_wait_s,
                language=self.language,
            )
        )
        self._company = self._spawn(self._keep_company(self.waiting_since))

    def take_over(self, operator: str) -> None:
        """``operator`` has the call from now on (the agent's reply in progress stops)."""
        if self.mode == "operator":
            raise HandoffConflict(f"the call is already taken over by {self.operator}")
        self._stop_company()
        self._interrupt()
        self.mode, self.operator, self.waiting_since = "operator", operator, None
        self._lines = asyncio.Queue()
        self._voice = self._spawn(self._say_lines(self._lines))
        self._emit(Handoff(state="connected", language=self.language))

    def say(self, operator: str, text: str) -> None:
        """Queue a line the avatar says for ``operator`` (after the lines before it)."""
        self._check_holder(operator)
        self._lines.put_nowait(text)
        if self._memory is not None:
            self._memory.remember("assistant", text)

    def operator_said(self, text: str) -> None:
        """The operator said ``text`` in their own voice: the agent remembers it as its own
        side of the conversation, as it does a typed line."""
        if self._memory is not None:
            self._memory.remember("assistant", text)

    def hand_back(self, operator: str) -> None:
        """Back to the agent; the lines already typed are still said."""
        self._check_holder(operator)
        self._lines.put_nowait(None)
        self.mode, self.operator, self.voice_live = "agent", None, False
        self._emit(Handoff(state="returned", language=self.language))

    def check_holder(self, operator: str) -> None:
        """HandoffConflict unless ``operator`` has the call."""
        self._check_holder(operator)

    def stop_speech(self) -> None:
        """The operator started talking: the agent's reply or a typed line stops."""
        self._interrupt()

    def _check_holder(self, operator: str) -> None:
        if self.mode != "operator":
            raise HandoffConflict("the call is not taken over; take it over first")
        if self.operator != operator:
            raise HandoffConflict(f"the call is taken over by {self.operator}")

    # ---- background --------------------------------------------------------------------
    def _stop_company(self) -> None:
        if self._company is not None:
            self._company.cancel()
            self._company = None

    async def _keep_company(self, since: float) -> None:
        lines = itertools.cycle(self.options.company(self.language))
        opts = self.options
        while self.mode == "waiting" and self.waiting_since == since:
            left = opts.timeout_s - (self._now() - since)
            if left <= 0:
                await self._time_out()
                return
            await asyncio.sleep(min(opts.company_every_s, left))
            if self.mode != "waiting" or self._now() - since >= opts.timeout_s:
                continue
            if not self._busy():
                self._speak(next(lines))

    async def _time_out(self) -> None:
        self.mode, self.waiting_since, self._company = "agent", None, None
        self._emit(Handoff(state="timeout", language=self.language))
        waited = 0.0
        while self._busy() and waited < _BUSY_WAIT_S:
            await asyncio.sleep(_BUSY_POLL_S)
            waited += _BUSY_POLL_S
        self._speak(self.options.timeout_line(self.language))

    async def _say_lines(self, lines: asyncio.Queue[str | None]) -> None:
        while (text := await lines.get()) is not None:
            task = self._speak(text)
            if task is not None:
                await asyncio.wait({task})  # a barge-in cancels the line, not this loop
