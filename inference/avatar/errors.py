"""Errors raised while preparing or loading an avatar; each names the problem and the input."""

from __future__ import annotations

__all__ = [
    "AvatarError",
    "AvatarNotFound",
    "CorruptAvatar",
    "FaceTooSmall",
    "InputNotFound",
    "InputTooLarge",
    "InvalidName",
    "NoFaceFound",
    "UnsupportedInput",
]


class AvatarError(Exception):
    """Base class of every avatar preparation or storage error."""


class InvalidName(AvatarError, ValueError):
    """The avatar name does not match ``NAME_PATTERN``: empty, too long, path separators,
    ``..``, a leading ``_``, ``-`` or ``.``, or characters other than ASCII letters, digits,
    ``_``, ``-`` and ``.``."""


class InputNotFound(AvatarError, FileNotFoundError):
    """The photo or video to prepare does not exist."""


class UnsupportedInput(AvatarError, ValueError):
    """The input is corrupt, of an unsupported format, or holds no usable frames."""


class InputTooLarge(UnsupportedInput):
    """The input declares more pixels than the cap allows (checked before any decoding)."""


class NoFaceFound(AvatarError):
    """No face was found in the photo, or in any frame of the video."""


class FaceTooSmall(AvatarError):
    """The face is too small to animate (its box is under the minimum size)."""


class AvatarNotFound(AvatarError, KeyError):
    """No prepared avatar of that name exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "avatar not found"


class CorruptAvatar(AvatarError):
    """A prepared avatar folder exists but its files are missing, unreadable or inconsistent."""
