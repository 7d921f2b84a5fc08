"""CallHandoff on its own: the queue, company lines, the timeout, take-over and hand-back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from inference.dialogue.handoff import HandoffGuardOptions
from inference.types import Transcript
from signaling.call.events import ControlEvent, Handoff
from signaling.call.handoff import CallHandoff, HandoffConflict, HandoffOptions


@dataclass
class FakeCall:
    """Stands in for the Session: lines take ``line_s`` to say; ``busy`` is set by hand."""

    line_s: float = 0.05
    busy: bool = False
    said: list[str] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    events: list[ControlEvent] = field(default_factory=list)
    interrupts: int = 0
    memory: list[tuple[str, str]] = field(default_factory=list)

    def speak(self, text: str) -> asyncio.Task[None]:
        self.said.append(text)
        self.started.append(asyncio.get_running_loop().time())
        return asyncio.ensure_future(asyncio.sleep(self.line_s))

    def interrupt(self) -> None:
        self.interrupts += 1

    def remember(self, role: str, text: str) -> None:
        self.memory.append((role, text))

    def handoffs(self) -> list[str]:
        return [e.state for e in self.events if isinstance(e, Handoff)]


def _handoff(call: FakeCall, **options: object) -> CallHandoff:
    opts = HandoffOptions(enabled=True, **options)  # type: ignore[arg-type]
    return CallHandoff(
        opts,
        language="en",
        speak=call.speak,
        busy=lambda: call.busy,
        interrupt=call.interrupt,
        emit=call.events.append,
        spawn=asyncio.ensure_future,
        now=asyncio.get_running_loop().time,
        memory=call,
    )


async def test_waiting_caller_hears_company_lines_then_the_timeout_apology() -> None:
    call = FakeCall()
    handoff = _handoff(call, company_every_s=0.1, timeout_s=0.45, expected_wait_s=90)
    handoff.intent("handoff", "zh")
    handoff.intent("handoff", "zh")  # already waiting: nothing new
    assert handoff.mode == "waiting" and call.handoffs() == ["waiting"]
    first = call.events[0]
    assert isinstance(first, Handoff) and first.wait_s == 90 and first.language == "zh"
    await asyncio.sleep(0.25)
    call.busy = True  # the agent answers a question meanwhile: no company line over it
    spoken = len(call.said)
    assert spoken >= 1 and all("等待" in s or "排队" in s for s in call.said)
    await asyncio.sleep(0.1)
    assert len(call.said) == spoken
    call.busy = False
    await asyncio.sleep(0.3)
    assert call.handoffs() == ["waiting", "timeout"] and handoff.mode == "agent"
    assert "回电" in call.said[-1], call.said


async def test_take_over_say_and_hand_back() -> None:
    call = FakeCall(line_s=0.1)
    handoff = _handoff(call, company_every_s=0.05)
    handoff.request("asked")
    handoff.take_over("ann [k1]")
    assert call.interrupts == 1 and handoff.listen_only and call.handoffs()[-1] == "connected"
    company = len(call.said)
    with pytest.raises(HandoffConflict, match="ann"):
        handoff.take_over("bob [k2]")
    with pytest.raises(HandoffConflict):
        handoff.say("bob [k2]", "hello")
    handoff.say("ann [k1]", "Hi, I'm Ann.")
    handoff.say("ann [k1]", "How can I help?")
    handoff.overheard(Transcript(text="My parcel is lost."))
    handoff.hand_back("ann [k1]")  # the lines typed before still get said
    assert handoff.mode == "agent" and call.handoffs()[-1] == "returned"
    await asyncio.sleep(0.35)
    assert call.said[company:] == ["Hi, I'm Ann.", "How can I help?"]
    assert call.started[-1] - call.started[-2] >= 0.09, "one line after the other"
    assert call.memory == [
        ("assistant", "Hi, I'm Ann."),
        ("assistant", "How can I help?"),
        ("user", "My parcel is lost."),
    ]
    with pytest.raises(HandoffConflict, match="not taken over"):
        handoff.hand_back("ann [k1]")


async def test_disabled_handoff_ignores_the_intent_but_allows_take_over() -> None:
    call = FakeCall()
    handoff = CallHandoff(
        HandoffOptions(enabled=False),
        language="en",
        speak=call.speak,
        busy=lambda: False,
        interrupt=call.interrupt,
        emit=call.events.append,
        spawn=asyncio.ensure_future,
        now=asyncio.get_running_loop().time,
    )
    handoff.intent("handoff", "en")
    assert handoff.mode == "agent" and not call.events
    handoff.take_over("ann [k1]")
    assert handoff.mode == "operator"


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        HandoffOptions(company_every_s=0)
    with pytest.raises(ValueError, match="company_lines"):
        HandoffOptions(company_lines=(("zh", "稍等"),))
    with pytest.raises(ValueError):
        HandoffGuardOptions(asks=0)
    assert HandoffOptions().company("fr") == HandoffOptions().company("en")
