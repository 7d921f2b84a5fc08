"""The renderer interface shared by ``warp`` and ``musetalk``: the ``Renderer`` protocol,
one small protocol per optional ability, the one base class of renderers that wrap another,
and the one way a piece of reply audio becomes renderer input (:func:`render_input`).

A wrapper never claims an ability itself: :func:`seeker` and :func:`rate_follower` answer
with the ability of the renderer at the bottom of the wrappers, or None.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from inference.audio import fit_length, resample_int16
from inference.types import PcmChunk

if TYPE_CHECKING:
    from inference.avatar.model import PreparedAvatar

__all__ = [
    "RENDER_RATE",
    "FrameRateFollower",
    "HealthReporter",
    "Renderer",
    "RendererWrapper",
    "Seekable",
    "Warmable",
    "frame_count",
    "rate_follower",
    "render_input",
    "render_plan",
    "reply_frames",
    "seeker",
]

RENDER_RATE = 16000  # Hz: the mono int16 audio every renderer takes


class Renderer(Protocol):
    """Produces RGB uint8 frames of the prepared avatar.

    ``render`` takes the reply audio of one sentence (``RENDER_RATE`` mono int16) and yields
    frames in small batches as soon as they are ready; frame i of the whole sentence covers
    audio [i / fps, (i + 1) / fps). The total is ``frame_count(len(audio), fps)``.
    """

    fps: int

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames it produces now."""
        ...

    def set_output_height(self, height: int) -> None:
        """Change the output size (long side follows aspect); takes effect on the next frame."""
        ...

    def idle_frames(self) -> Sequence[np.ndarray]:
        """A loop of idle frames (blinks, breathing) played forward then backward when silent."""
        ...

    def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]: ...


@runtime_checkable
class Seekable(Protocol):
    """A renderer with a timeline: ``seek(step)`` continues it from ``step`` frames since the
    idle loop began, so a video avatar starts talking on the source frame the idle loop
    shows at that moment instead of jumping."""

    def seek(self, step: int) -> None: ...


@runtime_checkable
class FrameRateFollower(Protocol):
    """A renderer that can render fewer frames than its ``fps`` when the call's video runs
    at a lower rate (a low quality rung): it still yields ``fps`` frames per second of
    audio, repeating each rendered one, but renders only ``render_fps`` of them."""

    @property
    def render_fps(self) -> int: ...

    def set_render_fps(self, fps: int) -> None: ...


@runtime_checkable
class HealthReporter(Protocol):
    """A renderer factory that can lose the ability to render (every GPU's work hung);
    ``healthy`` is False from then on."""

    @property
    def healthy(self) -> bool: ...


@runtime_checkable
class Warmable(Protocol):
    """A renderer factory that prepares an avatar before the first call needs it (caches
    its latents, compiles and starts the GPUs)."""

    def warm(self, avatar: PreparedAvatar) -> None: ...


class RendererWrapper:
    """Base of the renderers that wrap another (a clip cache, a supervisor).

    The ``Renderer`` basics go to ``inner``. The optional abilities are not methods of the
    wrapper: :meth:`seeker` and :meth:`rate_follower` return the inner renderer's own
    (through further wrappers), or None where it has none. A subclass overrides ``render``
    and whatever else it changes.
    """

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner
        self.fps = inner.fps

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.inner.frame_size

    def set_output_height(self, height: int) -> None:
        self.inner.set_output_height(height)

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self.inner.idle_frames()

    def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        return self.inner.render(audio_16k)

    def seeker(self) -> Seekable | None:
        """The inner renderer's seek, or None."""
        return seeker(self.inner)

    def rate_follower(self) -> FrameRateFollower | None:
        """The inner renderer's frame-rate following, or None."""
        return rate_follower(self.inner)


def seeker(renderer: Renderer) -> Seekable | None:
    """What seeks ``renderer``'s timeline (through its wrappers); None when nothing can."""
    if isinstance(renderer, RendererWrapper):
        return renderer.seeker()
    return renderer if isinstance(renderer, Seekable) else None


def rate_follower(renderer: Renderer) -> FrameRateFollower | None:
    """What makes ``renderer`` follow a lower frame rate (through its wrappers); None when
    nothing can."""
    if isinstance(renderer, RendererWrapper):
        return renderer.rate_follower()
    return renderer if isinstance(renderer, FrameRateFollower) else None


def frame_count(samples: int, fps: int) -> int:
    """Frames covering ``samples`` of ``RENDER_RATE`` audio: ceil(samples / RENDER_RATE * fps),
    without float error."""
    return -(-samples * fps // RENDER_RATE)


def reply_frames(chunk: PcmChunk, fps: int) -> int:
    """Frames a piece of reply audio fills on the call's timeline (at least one)."""
    return max(1, math.ceil(chunk.duration_s * fps))


def render_input(chunk: PcmChunk, fps: int) -> np.ndarray:
    """The renderer's input for a piece of reply audio: resampled to ``RENDER_RATE`` and cut
    or zero-padded to the shortest length of ``reply_frames(chunk, fps)`` frames.

    A reply turn renders exactly this, and the preloader warms the clip cache with it, so
    a clip cached by one is found by the other (the cache key hashes these samples).
    """
    audio = resample_int16(chunk.samples, chunk.sample_rate, RENDER_RATE)
    return fit_length(audio, -(-reply_frames(chunk, fps) * RENDER_RATE // fps))


def render_plan(n_frames: int, fps: int, render_fps: int) -> list[int]:
    """For each of ``n_frames`` output frames (at ``fps``), the frame to render for it.

    With ``render_fps >= fps`` every frame is its own. Otherwise the timeline is cut into
    ticks of ``1 / render_fps`` and every frame of a tick shows the frame at the tick's
    middle, so the rendered picture is never more than half a tick away from its sound.
    """
    if fps <= 0 or render_fps <= 0 or n_frames < 0:
        raise ValueError("fps and render_fps must be positive and n_frames >= 0")
    if render_fps >= fps:
        return list(range(n_frames))
    plan = []
    for i in range(n_frames):
        tick = math.floor(i * render_fps / fps)
        plan.append(min(n_frames - 1, math.floor((tick + 0.5) * fps / render_fps)))
    return plan
