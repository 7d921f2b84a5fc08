"""Prepared avatars for the offline renderer, loaded once per name."""

from __future__ import annotations

from pathlib import Path

from inference.avatar import (
    DEFAULT_AVATAR_NAME,
    AvatarError,
    AvatarNotFound,
    AvatarStore,
    PreparedAvatar,
    default_avatar,
)

from .errors import OfflineInputError

__all__ = ["AvatarSource"]


class AvatarSource:
    """Avatars from ``root`` (an ``AvatarStore`` folder); the default astronaut avatar is
    prepared there on first use. Errors become ``OfflineInputError`` naming the avatar."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = AvatarStore(self.root)
        self._loaded: dict[str, PreparedAvatar] = {}

    def get(self, name: str) -> PreparedAvatar:
        """The prepared avatar ``name`` (loaded from disk once)."""
        cached = self._loaded.get(name)
        if cached is not None:
            return cached
        try:
            if name == DEFAULT_AVATAR_NAME:
                avatar = default_avatar(self.root, progress=lambda done, total: None)
            else:
                avatar = self.store.load(name)
        except AvatarNotFound as exc:
            raise OfflineInputError(
                f"no prepared avatar {name!r} in {self.root} "
                f"(prepare one with `avatar-rtc prepare`, or use --avatars-dir)"
            ) from exc
        except AvatarError as exc:
            raise OfflineInputError(f"avatar {name!r}: {exc}") from exc
        self._loaded[name] = avatar
        return avatar
