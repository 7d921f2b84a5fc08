"""The default avatar: scikit-image's public-domain astronaut photo, prepared once and reused."""

from __future__ import annotations

from pathlib import Path

from .model import PreparedAvatar
from .prepare import PrepareOptions
from .store import AvatarStore, Progress

__all__ = ["DEFAULT_AVATAR_NAME", "default_avatar"]

DEFAULT_AVATAR_NAME = "astronaut"


def default_avatar(
    root: Path,
    *,
    options: PrepareOptions | None = None,
    progress: Progress | None = None,
) -> PreparedAvatar:
    """The astronaut avatar from ``root``: prepared on first use (a second or two), loaded after.

    The photo is ``skimage.data.astronaut()`` (NASA, public domain), 512×512, shipped inside
    scikit-image, so nothing is downloaded.
    """
    from skimage import data

    store = AvatarStore(Path(root), options=options)
    return store.prepare_image(data.astronaut(), DEFAULT_AVATAR_NAME, progress=progress)
