"""Options of the recording bot, and the error it raises when a call cannot be made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from signaling.ice import is_loopback_host

__all__ = ["LOOPBACK_ENV", "BotError", "BotOptions"]

LOOPBACK_ENV = "AVATAR_RTC_BOT_LOOPBACK"
"""``1`` always offers 127.0.0.1 ICE candidates, ``0`` never; unset: only for loopback URLs."""


class BotError(RuntimeError):
    """The call could not be made (server unreachable, busy, refused, no media)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BotOptions:
    """One bot call. ``audio`` (spoken) or ``text`` (typed) is the question."""

    url: str
    audio: Path | None = None
    text: str | None = None
    record: Path | None = None
    report: Path | None = None
    interrupt_audio: Path | None = None
    interrupt_after_ms: float = 800.0
    avatar: str | None = None
    language: str | None = None
    timeout_s: float = 30.0
    listen_s: float | None = None
    settle_s: float = 0.6  # quiet time after the greeting before asking
    loopback_candidates: bool | None = None  # None: from LOOPBACK_ENV, else the URL's host
    token: str | None = field(default=None, repr=False)  # access token from POST /session
    api_key: str | None = field(default=None, repr=False)  # or a key: the bot asks for a token

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"BotOptions.url must be http(s)://host:port, got {self.url!r}")
        if (self.audio is None) == (self.text is None):
            raise ValueError("BotOptions needs exactly one of audio (a file) or text")
        if self.text is not None and not 0 < len(self.text) <= 2000:
            raise ValueError("BotOptions.text must be 1 to 2000 characters")
        if self.timeout_s <= 0:
            raise ValueError("BotOptions.timeout_s must be positive")
        if self.interrupt_after_ms < 0:
            raise ValueError("BotOptions.interrupt_after_ms must be >= 0")
        if self.settle_s < 0:
            raise ValueError("BotOptions.settle_s must be >= 0")
        if self.listen_s is not None and self.listen_s <= 0:
            raise ValueError("BotOptions.listen_s must be positive")
        if self.token is not None and self.api_key is not None:
            raise ValueError("BotOptions takes a token or an api_key, not both")

    def wants_loopback(self) -> bool:
        if self.loopback_candidates is not None:
            return self.loopback_candidates
        env = os.environ.get(LOOPBACK_ENV)
        if env in ("0", "1"):
            return env == "1"
        return is_loopback_host(self.url)
