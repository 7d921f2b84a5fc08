"""Callers that misbehave, for isolation benchmarks: one floods typed text, one sends bursts
of mic noise that sound like speech to the VAD, one storms reconnects (control socket drops
and peer-connection resumes); one call may do several at once (``also``). Each is a
:class:`~signaling.client.loadgen.ProbeCall` that misbehaves only while
:meth:`Misbehaver.misbehave` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal

import aiohttp
import numpy as np

from signaling.client.bot_audio import MIC_RATE, MicTrack
from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions

__all__ = [
    "BEHAVIOURS",
    "FLOOD_TEXTS",
    "Behaviour",
    "MisbehaveOptions",
    "MisbehaveStats",
    "Misbehaver",
    "noise",
]

Behaviour = Literal["text", "noise", "reconnect"]
BEHAVIOURS: tuple[Behaviour, ...] = ("text", "noise", "reconnect")

FLOOD_TEXTS = (
    "What are your opening hours?",
    "How long does shipping take?",
    "Which payment methods do you accept?",
    "How can I return an item?",
    "Where is my order?",
    "Do you ship internationally?",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MisbehaveOptions:
    """``text_per_s``: typed messages a second; ``burst_s``/``gap_s``: noise on and off;
    ``reconnect_every_s``: socket drops, every ``resume_every``-th a new peer connection;
    ``also``: misbehaviours the call does besides ``behaviour``, at the same time."""

    behaviour: Behaviour
    also: tuple[Behaviour, ...] = ()
    text_per_s: float = 5.0
    burst_s: float = 0.8
    gap_s: float = 0.7
    reconnect_every_s: float = 0.5
    resume_every: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in BEHAVIOURS:
                raise ValueError(f"behaviour must be one of {BEHAVIOURS}, got {kind!r}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"a behaviour is named twice: {self.kinds}")
        if min(self.text_per_s, self.burst_s, self.gap_s, self.reconnect_every_s) <= 0:
            raise ValueError("rates and durations must be positive")
        if self.resume_every < 1:
            raise ValueError("resume_every must be >= 1")

    @property
    def kinds(self) -> tuple[Behaviour, ...]:
        """Every misbehaviour of the call: ``behaviour`` and ``also``."""
        return (self.behaviour, *self.also)


@dataclass(slots=True)
class MisbehaveStats:
    """What one misbehaving call did, and how often the server refused it."""

    behaviour: str
    texts: int = 0
    bursts: int = 0
    reconnects: int = 0
    resumes: int = 0
    failures: int = 0  # a reconnect or resume that did not work
    errors: int = 0  # error events the server sent
    refused_turns: int = 0  # of which: typed turns over the call's turn rate


def noise(seconds: float, *, seed: int = 0, level: float = 0.25) -> np.ndarray:
    """Band-limited noise over a 150 Hz buzz with a 4 Hz syllable envelope, int16 at
    48 kHz: not words, but speech to a VAD."""
    n = round(seconds * MIC_RATE)
    t = np.arange(n) / MIC_RATE
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / MIC_RATE)
    spectrum[(freqs < 200) | (freqs > 3000)] = 0
    hiss = np.fft.irfft(spectrum, n)
    hiss /= max(float(np.abs(hiss).max()), 1e-9)
    buzz = np.sign(np.sin(2 * np.pi * 150 * t))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    pcm = (0.6 * hiss + 0.4 * buzz) * envelope * level * 32767
    return pcm.astype(np.int16)


class Misbehaver:
    """One call that misbehaves as ``options`` say while :meth:`misbehave` runs."""

    def __init__(self, probe: ProbeOptions, options: MisbehaveOptions) -> None:
        self.options = options
        self.call = ProbeCall(probe, mic=MicTrack if "noise" in options.kinds else None)
        self._stats = MisbehaveStats(behaviour="+".join(options.kinds))

    async def connect(self, *, greeting_s: float = 15.0) -> None:
        """Make the call, wait until its media flows and its greeting has been said (at
        most ``greeting_s``): a quiet call from then on."""
        await self.call.connect()
        await self.call.wait_connected()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(greeting_s):
                spoke = await self.call.wait_event("state", state="speaking")
                await self.call.wait_event("state", start=spoke, state="listening")

    @property
    def stats(self) -> MisbehaveStats:
        errors = [e for e in self.call.events if e.get("type") == "error"]
        self._stats.errors = len(errors)
        self._stats.refused_turns = sum("typed" in str(e.get("reason", "")) for e in errors)
        return self._stats

    async def misbehave(self, until: asyncio.Event) -> None:
        """Misbehave (every kind at once) until ``until`` is set."""
        await asyncio.gather(*(self._repeat(kind, until) for kind in self.options.kinds))

    async def _repeat(self, kind: Behaviour, until: asyncio.Event) -> None:
        step = {"text": self._text, "noise": self._noise, "reconnect": self._reconnect}
        act = step[kind]
        n = 0
        while not until.is_set():
            period = await act(n)
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), period)

    async def hang_up(self) -> None:
        await self.call.hang_up()

    async def _text(self, n: int) -> float:
        text = f"{FLOOD_TEXTS[n % len(FLOOD_TEXTS)]} ({n})"
        with contextlib.suppress(RuntimeError, ConnectionError):  # no socket: try again later
            await self.call.send({"type": "text", "text": text})
            self._stats.texts += 1
        return 1.0 / self.options.text_per_s

    async def _noise(self, n: int) -> float:
        mic = self.call.mic
        if isinstance(mic, MicTrack):
            opts = self.options
            played = mic.play(noise(opts.burst_s, seed=opts.seed + n))
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(played.finished), opts.burst_s + 2.0)
            self._stats.bursts += 1
        return self.options.gap_s

    async def _reconnect(self, n: int) -> float:
        try:
            if (n + 1) % self.options.resume_every == 0:
                await self.call.resume()
                self._stats.resumes += 1
            else:
                await self.call.drop_ws()
                await self.call.open_ws()
                self._stats.reconnects += 1
        except (OfferRefused, aiohttp.ClientError, TimeoutError, ConnectionError):
            self._stats.failures += 1
        return self.options.reconnect_every_s
