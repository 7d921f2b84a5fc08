"""Fault containment for one call: a renderer that restarts itself after a failure.

``SupervisedRenderer`` stands in for a call's renderer. When ``render`` raises, the rest of
that sentence is filled with idle frames (the voice keeps playing over the idle loop), a
fresh renderer is built in the background, and later sentences use it. Restarts back off
and are capped per window, so a renderer that keeps dying cannot spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.render.base import (
    FrameRateFollower,
    Renderer,
    RendererWrapper,
    frame_count,
    rate_follower,
)

__all__ = ["RestartPolicy", "SupervisedRenderer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """At most ``max_restarts`` within ``window_s``; the n-th waits ``backoff_s * 2**(n-1)``."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.2

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0 or self.backoff_s < 0:
            raise ValueError("RestartPolicy needs max_restarts >= 0, window_s > 0, backoff_s >= 0")


class SupervisedRenderer(RendererWrapper):
    """A :class:`Renderer` that survives the failure of the one it wraps.

    While the wrapped renderer is down, ``inner`` is a stand-in that plays the idle loop
    (and can neither seek nor follow a frame rate).
    """

    def __init__(
        self,
        inner: Renderer,
        *,
        restart: Callable[[], Awaitable[Renderer]],
        policy: RestartPolicy | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self._restart = restart
        self.policy = policy or RestartPolicy()
        self._on_failure = on_failure
        self._now = now
        self._idle = list(inner.idle_frames())
        self._down = _IdleStandIn(self._idle, self.fps)
        # restarts come from the same factory: the first renderer tells what they can do
        self._rate = _RememberedRate(self) if rate_follower(inner) is not None else None
        self.failures = 0
        self.restarts = 0
        self._recent: list[float] = []
        self._restarting: asyncio.Task[None] | None = None
        self._height: int | None = None

    @property
    def healthy(self) -> bool:
        return self.inner is not self._down

    def set_output_height(self, height: int) -> None:
        self._height = height  # a restarted renderer gets it too
        self.inner.set_output_height(height)

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self._idle

    def rate_follower(self) -> FrameRateFollower | None:
        """Follows a frame rate when the wrapped renderer does; the rate set is also given
        to a restarted renderer."""
        return self._rate

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        total = max(1, frame_count(len(audio_16k), self.fps))
        done = 0
        inner = self.inner
        try:
            async for batch in inner.render(audio_16k):
                done += len(batch)
                yield batch
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(inner, exc)
        if done < total:  # the idle loop stands in until the renderer is back
            yield [self._idle[(done + i) % len(self._idle)] for i in range(total - done)]

    def _failed(self, inner: Renderer, exc: Exception) -> None:
        self.failures += 1
        log.error("renderer failed (%s: %s); restarting it", type(exc).__name__, exc)
        if self._on_failure is not None:
            self._on_failure(exc)
        if self.inner is inner:
            self.inner = self._down
        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.ensure_future(self._restart_loop())

    async def _restart_loop(self) -> None:
        while not self.healthy:
            now = self._now()
            self._recent = [t for t in self._recent if now - t < self.policy.window_s]
            if len(self._recent) >= self.policy.max_restarts:
                log.error(
                    "renderer restarted %d times in %g s; staying on the idle loop",
                    len(self._recent),
                    self.policy.window_s,
                )
                return
            await asyncio.sleep(self.policy.backoff_s * 2 ** len(self._recent))
            self._recent.append(self._now())
            try:
                fresh = await self._restart()
                if self._height is not None:
                    fresh.set_output_height(self._height)
                if self._rate is not None:
                    self._rate.apply(fresh)
                self.inner = fresh
                self.restarts += 1
                log.info("renderer restarted")
            except Exception:
                log.exception("restarting the renderer failed")

    async def close(self) -> None:
        """Stop a restart in progress."""
        task = self._restarting
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _IdleStandIn:
    """The supervised renderer while the real one is down: the idle loop, and nothing else."""

    def __init__(self, idle: Sequence[np.ndarray], fps: int) -> None:
        self._idle = idle
        self.fps = fps

    @property
    def frame_size(self) -> tuple[int, int]:
        h, w = self._idle[0].shape[:2]
        return (w, h)

    def set_output_height(self, height: int) -> None:
        pass  # the supervisor gives it to the restarted renderer

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self._idle

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        n = max(1, frame_count(len(audio_16k), self.fps))
        yield [self._idle[i % len(self._idle)] for i in range(n)]


class _RememberedRate:
    """The supervised renderer's frame-rate following: passed on to the renderer running
    now and kept for the next one."""

    def __init__(self, owner: SupervisedRenderer) -> None:
        self._owner = owner
        self._fps: int | None = None

    @property
    def render_fps(self) -> int:
        return self._fps or self._owner.fps

    def set_render_fps(self, fps: int) -> None:
        self._fps = fps
        self.apply(self._owner.inner)

    def apply(self, renderer: Renderer) -> None:
        """Give ``renderer`` the rate set so far (if any, and if it follows one)."""
        follower = rate_follower(renderer)
        if self._fps is not None and follower is not None:
            follower.set_render_fps(self._fps)
