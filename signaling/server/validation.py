"""Strict parsing of what clients send: the offer body and control messages."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadRequest",
    "ClientMessage",
    "OfferRequest",
    "parse_client_message",
    "parse_offer",
    "parse_session_request",
    "safe_token",
]

_LANGUAGES = ("en", "zh")
_MESSAGE_TYPES = ("text", "interrupt", "ping")
_MAX_DEPTH = 32  # nesting of arrays and objects; what we accept is one level deep
# a string, or an unclosed one to the end; possessive, so linear on any input
_JSON_STRINGS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(ValueError):
    """A client sent something we reject; ``reason`` is safe to show to it."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class OfferRequest:
    sdp: str
    avatar: str | None = None
    language: str = "en"
    token: str | None = None  # access token (new call) or session token (resume)
    session: str | None = None  # resume this call with a new peer connection


@dataclass(frozen=True, slots=True)
class ClientMessage:
    type: str
    text: str | None = None
    t: float | None = None


def _load_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """Strict JSON (no NaN or Infinity), at most ``_MAX_DEPTH`` levels deep, an object."""
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from exc
    _check_depth(text, what)
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # bad JSON, NaN or Infinity, an integer of too many digits
        raise BadRequest(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return data


def _check_depth(text: str, what: str) -> None:
    """Refuse deep nesting before the recursive parser meets it (brackets in strings aside)."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return
    depth = 0
    for c in _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", text)):
        depth += 1 if c in "[{" else -1
        if depth > _MAX_DEPTH:
            raise BadRequest(f"{what} is nested deeper than {_MAX_DEPTH} levels")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _has_surrogate(text: str) -> bool:
    """A lone surrogate (from an escape like ``\\ud800``): not text, and not encodable."""
    return _SURROGATE.search(text) is not None


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def parse_offer(raw: bytes, *, max_bytes: int) -> OfferRequest:
    """Validate ``POST /offer``: ``{sdp, type: "offer", avatar?, language?}``."""
    if len(raw) > max_bytes:
        raise BadRequest(f"offer larger than {max_bytes} bytes", status=413)
    data = _load_object(raw, "offer")
    unknown = set(data) - {"sdp", "type", "avatar", "language", "token", "session"}
    if unknown:
        raise BadRequest(f"unknown field(s) in offer: {', '.join(sorted(unknown))}")
    if data.get("type") != "offer":
        raise BadRequest('field "type" must be "offer"')
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadRequest('field "sdp" must be a non-empty string')
    _check_sdp(sdp)
    avatar = data.get("avatar")
    if avatar is not None and (not isinstance(avatar, str) or not _safe_name(avatar)):
        raise BadRequest('field "avatar" must be an avatar name')
    language = data.get("language", "en")
    if language not in _LANGUAGES:
        raise BadRequest(f'field "language" must be one of {", ".join(_LANGUAGES)}')
    token = data.get("token")
    if token is not None and not safe_token(token):
        raise BadRequest('field "token" must be a token string')
    session = data.get("session")
    if session is not None and (not isinstance(session, str) or not _safe_name(session)):
        raise BadRequest('field "session" must be a session id')
    if session is not None and token is None:
        raise BadRequest('resuming a session needs its "token"')
    return OfferRequest(
        sdp=sdp, avatar=avatar or None, language=language, token=token, session=session
    )


def safe_token(token: object) -> bool:
    """A plausible token: 1..2048 characters of base64url and dots."""
    return (
        isinstance(token, str)
        and 0 < len(token) <= 2048
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in token)
    )


def parse_session_request(raw: bytes, *, max_bytes: int = 4096) -> None:
    """Validate ``POST /session``: an empty body or an empty JSON object."""
    if len(raw) > max_bytes:
        raise BadRequest(f"body larger than {max_bytes} bytes", status=413)
    if not raw.strip():
        return
    data = _load_object(raw, "body")
    if data:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(map(str, data)))}")


def _check_sdp(sdp: str) -> None:
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if _has_surrogate(sdp):
        raise BadRequest("malformed SDP: it holds a lone surrogate (\\ud800-\\udfff)")
    if not lines or lines[0] != "v=0":
        raise BadRequest("malformed SDP: it must start with v=0")
    media = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith("m=audio") for line in media):
        raise BadRequest("malformed SDP: no audio section (the microphone)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise BadRequest("malformed SDP: no DTLS fingerprint")
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise BadRequest(f"malformed SDP line: {line[:40]!r}")


def _safe_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name)


def parse_client_message(raw: str, *, max_text_chars: int) -> ClientMessage:
    """Validate one control message: ``text``, ``interrupt`` or ``ping``."""
    if len(raw) > max_text_chars * 4 + 256:
        raise BadRequest("message too large")
    data = _load_object(raw, "message")
    kind = data.get("type")
    if kind not in _MESSAGE_TYPES:
        raise BadRequest(f"unknown message type {kind!r}; expected one of {_MESSAGE_TYPES}")
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest('"text" must be a non-empty string')
        if _has_surrogate(text):
            raise BadRequest('"text" holds a lone surrogate (\\ud800-\\udfff); send valid Unicode')
        if len(text) > max_text_chars:
            raise BadRequest(f'"text" longer than {max_text_chars} characters')
        return ClientMessage(type="text", text=text.strip())
    if kind == "ping":
        t = data.get("t")
        if t is None:
            return ClientMessage(type="ping")
        number = _finite(t)
        if number is None:
            raise BadRequest('"t" must be a finite number')
        return ClientMessage(type="ping", t=number)
    return ClientMessage(type="interrupt")
