"""Errors of the offline renderer; each message names the input and the problem."""

from __future__ import annotations

__all__ = ["AudioInputError", "OfflineError", "OfflineInputError", "ScriptError"]


class OfflineError(Exception):
    """Base class of every offline rendering error."""


class OfflineInputError(OfflineError, ValueError):
    """A bad input: missing avatar, empty text, unreadable audio, malformed script."""


class AudioInputError(OfflineInputError):
    """An audio file is missing, unreadable or holds no audio stream."""


class ScriptError(OfflineInputError):
    """A script CSV is malformed (the message names the file, line and column)."""
