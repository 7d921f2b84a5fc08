"""Renderer interface shared by the weight-free ``warp`` renderer and ``musetalk``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np


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
