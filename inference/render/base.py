"""Renderer interface shared by the weight-free ``warp`` renderer and ``musetalk``."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FrameRateFollower", "Renderer", "render_plan"]


class Renderer(Protocol):
    """Produces RGB uint8 frames of the prepared avatar.

    ``render`` takes the reply audio of one sentence (16 kHz mono int16) and yields frames
    in small batches as soon as they are ready; frame i of the whole sentence covers audio
    [i / fps, (i + 1) / fps). The total number of frames is ceil(len(audio) / 16000 * fps).
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
class FrameRateFollower(Protocol):
    """A renderer that can render fewer frames than its ``fps`` when the call's video runs
    at a lower rate (a low quality rung): it still yields ``fps`` frames per second of
    audio, repeating each rendered one, but renders only ``render_fps`` of them."""

    @property
    def render_fps(self) -> int: ...

    def set_render_fps(self, fps: int) -> None: ...


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
