"""Avatar preparation: a face photo or video → ``PreparedAvatar`` stored under ``avatars/NAME/``."""

from .default import DEFAULT_AVATAR_NAME, default_avatar
from .errors import (
    AvatarError,
    AvatarNotFound,
    CorruptAvatar,
    FaceTooSmall,
    InputNotFound,
    InputTooLarge,
    InvalidName,
    NoFaceFound,
    UnsupportedInput,
)
from .model import PreparedAvatar
from .prepare import PREP_VERSION, PrepareOptions
from .store import NAME_PATTERN, AvatarInfo, AvatarStore, validate_name

__all__ = [
    "DEFAULT_AVATAR_NAME",
    "NAME_PATTERN",
    "PREP_VERSION",
    "AvatarError",
    "AvatarInfo",
    "AvatarNotFound",
    "AvatarStore",
    "CorruptAvatar",
    "FaceTooSmall",
    "InputNotFound",
    "InputTooLarge",
    "InvalidName",
    "NoFaceFound",
    "PrepareOptions",
    "PreparedAvatar",
    "UnsupportedInput",
    "default_avatar",
    "validate_name",
]
