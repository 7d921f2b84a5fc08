"""The weight-free ``warp`` renderer: an audio-driven mouth, jaw and blink warp on the CPU.

Per avatar it precomputes canonical displacement fields that follow the avatar's jaw; per
output size (and source frame) the lower-face region, its pixel grid and the fields sampled on
it. Each frame then costs a resize (video) or copy (photo), a few array operations and one
``cv2.remap`` over the lower face — under 2 ms for a 512 px frame on one core.

Photo avatars breathe and blink in the idle loop and blink while talking; video avatars play
their own frames (ping-pong) both when idle and under the talking mouth.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..avatar.model import PreparedAvatar
from ..work import run_blocking
from .base import frame_count, render_plan
from .warp_assets import BLINK_PROFILE, WarpAssets
from .warp_audio import MouthShapes, MouthTrackOptions, mouth_shapes
from .warp_fields import apply_blink
from .warp_mouth import MouthStyle

__all__ = ["BLINK_PROFILE", "WarpAssets", "WarpOptions", "WarpRenderer", "pingpong_index"]
_MIN_HEIGHT, _MAX_HEIGHT = 64, 2160


@dataclass(frozen=True, slots=True, kw_only=True)
class WarpOptions:
    """Options of the warp renderer (validated; keyword-only)."""

    fps: int = 25
    output_long_side: int = 512  # initial output size: the long side, the other follows aspect
    batch_frames: int = 5  # frames per worker-thread batch of ``render``
    idle_seconds: float = 3.2  # length of a photo's idle loop
    blink_interval_s: tuple[float, float] = (2.0, 6.0)  # random gap between blinks
    breathing: float = 0.002  # idle head rise as a fraction of the frame height
    seed: int | None = None  # blink timing; None for a different rhythm per renderer
    mouth: MouthStyle = field(default_factory=MouthStyle)
    track: MouthTrackOptions = field(default_factory=MouthTrackOptions)

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError("fps must be within 1..60")
        if not _MIN_HEIGHT <= self.output_long_side <= 4096:
            raise ValueError(f"output_long_side must be within {_MIN_HEIGHT}..4096")
        if not 1 <= self.batch_frames <= 50:
            raise ValueError("batch_frames must be within 1..50")
        if not 0.5 <= self.idle_seconds <= 30:
            raise ValueError("idle_seconds must be within 0.5..30")
        lo, hi = self.blink_interval_s
        if not 0.5 <= lo <= hi:
            raise ValueError("blink_interval_s must be (low, high) with 0.5 <= low <= high")
        if not 0.0 <= self.breathing <= 0.02:
            raise ValueError("breathing must be within [0, 0.02]")


def pingpong_index(step: int, count: int) -> int:
    """Index of step ``step`` when ``count`` frames are played forward then backward."""
    if count <= 1:
        return 0
    period = 2 * (count - 1)
    k = step % period
    return k if k < count else period - k


class WarpRenderer:
    """Renders the prepared avatar talking to given audio (the ``Renderer`` protocol).

    A cheap per-call view: the per-avatar work lives in ``assets`` (a ``WarpAssets``), which
    a factory should build once per avatar and pass to every call's renderer; without it the
    renderer builds its own. ``render`` is meant for one sentence at a time.
    """

    def __init__(
        self,
        avatar: PreparedAvatar,
        *,
        options: WarpOptions | None = None,
        assets: WarpAssets | None = None,
    ) -> None:
        self.options = options or WarpOptions()
        self.fps = self.options.fps
        self.avatar = avatar
        if assets is not None and assets.avatar is not avatar:
            raise ValueError("assets were built for another avatar")
        if assets is not None and assets.mouth != self.options.mouth:
            raise ValueError("assets were built with other mouth options")
        self.assets = assets or WarpAssets(avatar, mouth=self.options.mouth)
        src_w, src_h = avatar.size
        long_side = self.options.output_long_side
        self._height = _even(long_side if src_h >= src_w else long_side * src_h / src_w)
        self._rng = random.Random(self.options.seed)
        self._next_blink = self._blink_gap()
        self._step = 0  # frames rendered so far (drives blinks and the video cursor)
        self._render_fps = self.fps

    # -- Renderer protocol -------------------------------------------------------------------

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames produced now."""
        src_w, src_h = self.avatar.size
        return _even(self._height * src_w / src_h), self._height

    def set_output_height(self, height: int) -> None:
        """Change the output height (clamped to 64..2160, made even); the width follows aspect."""
        self._height = _even(min(max(int(height), _MIN_HEIGHT), _MAX_HEIGHT))

    def idle_frames(self) -> Sequence[np.ndarray]:
        """The idle loop: a photo breathes and blinks; a video plays its frames (at ``fps``).

        A photo's loop is computed on the first call per size (≈0.1 s) and shared by every
        renderer of the avatar; a video's frames are resized when read.
        """
        opts = self.options
        return self.assets.idle(
            self.frame_size, fps=self.fps, seconds=opts.idle_seconds, breathing=opts.breathing
        )

    @property
    def render_fps(self) -> int:
        return self._render_fps

    def set_render_fps(self, fps: int) -> None:
        """Draw only ``fps`` frames per second (each repeated to fill ``self.fps``)."""
        if fps <= 0:
            raise ValueError(f"render fps must be positive, got {fps}")
        self._render_fps = min(int(fps), self.fps)

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        """Yield the frames for ``audio_16k`` in batches; frame i covers [i/fps, (i+1)/fps).

        At a ``render_fps`` under ``fps`` only the frames of :func:`render_plan` are drawn;
        the others repeat them (the same array)."""
        shapes = mouth_shapes(audio_16k, self.fps, options=self.options.track)
        total = frame_count(len(audio_16k), self.fps)
        order = render_plan(total, self.fps, self._render_fps)
        batch = self.options.batch_frames
        for start in range(0, total, batch):
            plan = [self._plan_next() for _ in range(min(batch, total - start))]
            end = start + len(plan)
            # within the batch: the planned frame, or the batch's edge for one beyond it
            wanted = [min(max(order[i], start), end - 1) for i in range(start, end)]
            picks = sorted(set(wanted))
            drawn = await run_blocking(
                self._draw_batch, shapes, [plan[j - start] for j in picks], picks
            )
            by_index = dict(zip(picks, drawn, strict=True))
            yield [by_index[j] for j in wanted]

    # -- direct use (tests, benchmarks, offline rendering) ----------------------------------

    def seek(self, step: int) -> None:
        """Continue the timeline from ``step`` frames since the idle loop began.

        For a video avatar the next talking frame then uses the source frame the idle loop
        (played forward then backward) would show at that step, so talking starts without a
        jump; the player of the idle loop calls it with its own step count before ``render``.
        """
        self._step = max(0, int(step))
        self._next_blink = self._step + self._blink_gap()

    def render_all(self, audio_16k: np.ndarray) -> list[np.ndarray]:
        """Every frame for ``audio_16k`` at once, in the calling thread."""
        shapes = mouth_shapes(audio_16k, self.fps, options=self.options.track)
        plan = [self._plan_next() for _ in range(frame_count(len(audio_16k), self.fps))]
        return self._draw_batch(shapes, plan, list(range(len(plan))))

    def draw(
        self, openness: float, width: float = 0.0, *, blink: float = 0.0, source_index: int = 0
    ) -> np.ndarray:
        """One frame of the current size for explicit mouth parameters (0..1, -1..1)."""
        size = self.frame_size
        image = self.assets.source(source_index, size)
        self.assets.region(source_index, size).apply(image, openness, width)
        if blink > 0:
            for eye in self.assets.eyes(source_index, size):
                apply_blink(image, eye, blink)
        return image

    def blend_support(self, source_index: int = 0) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """Region box (x0, y0, x1, y1) at the current size and where the mouth warp acts in it."""
        region = self.assets.region(source_index, self.frame_size)
        return region.box, region.support()

    # -- internals -----------------------------------------------------------------------------

    def _plan_next(self) -> tuple[int, float]:
        """(source frame index, blink amount) of the next frame; advances the timeline."""
        step = self._step
        self._step += 1
        if self.avatar.num_frames > 1:
            src_step = int(step * self.avatar.fps / self.fps)
            index = pingpong_index(src_step, self.avatar.num_frames)
            return index, 0.0  # a video carries its own blinks
        phase = step - self._next_blink
        if phase >= len(BLINK_PROFILE):
            self._next_blink = step + self._blink_gap()
            phase = -1
        blink = BLINK_PROFILE[phase] if 0 <= phase < len(BLINK_PROFILE) else 0.0
        return 0, blink

    def _blink_gap(self) -> int:
        lo, hi = self.options.blink_interval_s
        return max(len(BLINK_PROFILE) + 1, round(self._rng.uniform(lo, hi) * self.fps))

    def _draw_batch(
        self,
        shapes: MouthShapes,
        plan: list[tuple[int, float]],
        frames: list[int],
    ) -> list[np.ndarray]:
        """Draw ``frames`` (indices into the sentence), ``plan`` holding each one's entry."""
        out = []
        for i, (index, blink) in zip(frames, plan, strict=True):
            openness = float(shapes.openness[i]) if i < len(shapes) else 0.0
            width = float(shapes.width[i]) if i < len(shapes) else 0.0
            out.append(self.draw(openness, width, blink=blink, source_index=index))
        return out


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)
