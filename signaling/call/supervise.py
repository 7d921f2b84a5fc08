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
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.render.base import FrameRateFollower, Renderer

__all__ = ["RestartPolicy", "SupervisedRenderer"]

log = logging.getLogger(__name__)

_RENDER_RATE = 16000


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """At most ``max_restarts`` within ``window_s``; the n-th waits ``backoff_s * 2**(n-1)``."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.2

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0 or self.backoff_s < 0:
            raise ValueError("RestartPolicy needs max_restarts >= 0, window_s > 0, backoff_s >= 0")


class SupervisedRenderer:
    """A :class:`Renderer` that survives the failure of the one it wraps."""

    def __init__(
        self,
        inner: Renderer,
        *,
        restart: Callable[[], Awaitable[Renderer]],
        policy: RestartPolicy | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner: Renderer | None = inner
        self._restart = restart
        self.policy = policy or RestartPolicy()
        self._on_failure = on_failure
        self._now = now
        self._idle = list(inner.idle_frames())
        self.fps = inner.fps
        self.mouth_box = getattr(inner, "mouth_box", (0.3, 0.55, 0.7, 0.85))
        self.failures = 0
        self.restarts = 0
        self._recent: list[float] = []
        self._restarting: asyncio.Task[None] | None = None
        self._height: int | None = None
        self._render_fps: int | None = None

    @property
    def healthy(self) -> bool:
        return self._inner is not None

    @property
    def frame_size(self) -> tuple[int, int]:
        if self._inner is not None:
            return self._inner.frame_size
        h, w = self._idle[0].shape[:2]
        return (w, h)

    def set_output_height(self, height: int) -> None:
        self._height = height  # a restarted renderer gets it too
        if self._inner is not None:
            self._inner.set_output_height(height)

    @property
    def render_fps(self) -> int:
        return self._render_fps or self.fps

    def set_render_fps(self, fps: int) -> None:
        self._render_fps = fps  # a restarted renderer gets it too
        if isinstance(self._inner, FrameRateFollower):
            self._inner.set_render_fps(fps)

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self._idle

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        total = max(1, math.ceil(len(audio_16k) / _RENDER_RATE * self.fps))
        done = 0
        inner = self._inner
        if inner is not None:
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
        if self._inner is inner:
            self._inner = None
        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.ensure_future(self._restart_loop())

    async def _restart_loop(self) -> None:
        while self._inner is None:
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
                if self._render_fps is not None and isinstance(fresh, FrameRateFollower):
                    fresh.set_render_fps(self._render_fps)
                self._inner = fresh
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
