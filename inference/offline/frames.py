"""Frame sources of the offline renderer: what makes the ``Renderer`` of each clip.

``FrameSource`` is the seam between the batch pipeline and a renderer: per clip it gives a
:class:`~inference.render.base.Renderer` (the protocol of the live calls), which renders the
clip's :func:`~inference.render.base.render_input`. ``WarpFrames`` runs the weight-free warp
renderer on the CPU; ``inference.offline.musetalk.MuseTalkFrames`` runs MuseTalk on a GPU
with batches sized from free device memory.
"""

from __future__ import annotations

from typing import Protocol

from inference.avatar.model import PreparedAvatar
from inference.render.base import Renderer
from inference.render.warp import WarpAssets, WarpOptions, WarpRenderer

__all__ = ["FrameSource", "WarpFrames"]


class FrameSource(Protocol):
    """Makes the renderers of the offline pipeline (one clip at a time)."""

    name: str  # "warp", "musetalk": part of the resume key
    fps: int

    def renderer(self, avatar: PreparedAvatar, *, height: int) -> Renderer:
        """A renderer of ``avatar`` at ``fps`` whose frames are ``height`` pixels high (the
        width follows the avatar's aspect, even)."""
        ...

    def describe(self) -> str:
        """Settings that change the pixels (part of the resume key)."""
        ...

    def close(self) -> None:
        """Release workers and device memory."""
        ...


class WarpFrames:
    """The warp renderer on the CPU; the per-avatar assets are built once and reused."""

    name = "warp"

    def __init__(self, options: WarpOptions | None = None) -> None:
        # A fixed blink seed: a re-run renders the same pixels.
        self.options = options or WarpOptions(seed=0, batch_frames=25)
        self.fps = self.options.fps
        self._assets: dict[str, WarpAssets] = {}

    def _assets_for(self, avatar: PreparedAvatar) -> WarpAssets:
        assets = self._assets.get(avatar.name)
        if assets is None or assets.avatar is not avatar:
            assets = WarpAssets(avatar, mouth=self.options.mouth)
            self._assets[avatar.name] = assets
        return assets

    def renderer(self, avatar: PreparedAvatar, *, height: int) -> Renderer:
        renderer = WarpRenderer(avatar, options=self.options, assets=self._assets_for(avatar))
        renderer.set_output_height(height)
        return renderer

    def describe(self) -> str:
        return repr(self.options)

    def close(self) -> None:
        self._assets.clear()
