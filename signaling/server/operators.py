"""Operator access: the keys of ``access.operator_keys`` open the call records and the
operator console; callers' API keys never do.

An operator is known by the key they present (its fingerprint, ``key_id``) and the name they
give (``X-Operator-Name``, for the records). The console's WebSocket, which a browser cannot
give a header, takes a short-lived token signed with the operator's own key instead
(:func:`issue_operator_token`): removing a key from the configuration voids its tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from aiohttp import web

from signaling.server.auth import AuthError
from signaling.server.guard import presented_key
from signaling.server.state import STATE

__all__ = [
    "Operator",
    "check_operator_key",
    "issue_operator_token",
    "operator_key_id",
    "require_operator",
    "verify_operator_token",
]

_TOKEN_PREFIX = "op1"
_MAX_TOKEN_CHARS = 512
_MAX_NAME_CHARS = 40


@dataclass(frozen=True, slots=True)
class Operator:
    """Who acts on the console: the key's fingerprint, and the name they gave."""

    key_id: str
    name: str = "operator"

    @property
    def actor(self) -> str:
        """How records and logs name them."""
        return f"{self.name} [{self.key_id}]"


def operator_key_id(key: str) -> str:
    """A key's public fingerprint (8 hex digits of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def check_operator_key(presented: str | None, keys: list[str]) -> str:
    """The key id of ``presented``; AuthError unless it is one of ``keys`` (401), or when no
    key is configured (403)."""
    if not keys:
        raise AuthError("operator access is off: no access.operator_keys configured", 403)
    if presented is None:
        raise AuthError("an operator key is required (Authorization: Bearer KEY)", 401)
    given = presented.encode()
    if not any(hmac.compare_digest(given, key.encode()) for key in keys):
        raise AuthError("not an operator key", 401)
    return operator_key_id(presented)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(key: str, body: str) -> str:
    return _b64(hmac.new(key.encode(), body.encode("ascii"), hashlib.sha256).digest())


def issue_operator_token(key: str, operator: Operator, *, now: float, ttl_s: float) -> str:
    """A token standing for ``operator`` (who holds ``key``) until ``now + ttl_s``."""
    claims = {"k": operator.key_id, "n": operator.name, "exp": int(now + ttl_s)}
    body = f"{_TOKEN_PREFIX}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{body}.{_sign(key, body)}"


def verify_operator_token(token: str, keys: list[str], *, now: float) -> Operator:
    """The operator a valid, unexpired token stands for; AuthError (401) otherwise."""
    parts = token.split(".") if len(token) <= _MAX_TOKEN_CHARS else []
    if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
        raise AuthError("malformed operator token")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        key_id, name, exp = str(claims["k"]), str(claims["n"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise AuthError("malformed operator token") from exc
    body = f"{parts[0]}.{parts[1]}"
    signed = any(
        operator_key_id(key) == key_id and hmac.compare_digest(_sign(key, body), parts[2])
        for key in keys
    )
    if not signed:
        raise AuthError("invalid operator token")
    if now >= exp:
        raise AuthError("operator token expired; ask POST /operator/token again")
    return Operator(key_id=key_id, name=name)


def _display_name(raw: str | None) -> str:
    name = "".join(ch for ch in (raw or "") if ch.isprintable()).strip()[:_MAX_NAME_CHARS]
    return name or "operator"


def require_operator(request: web.Request) -> Operator:
    """The operator behind the request: an operator key (``Authorization: Bearer KEY`` or
    ``X-API-Key``; ``X-Operator-Name`` names them), or a console token in ``?token=``.
    Raises a JSON 401 (no or a wrong key or token) or 403 (operator access is off)."""
    keys = [k.get_secret_value() for k in request.app[STATE].settings.access.operator_keys]
    presented = presented_key(request)
    token = request.query.get("token")
    try:
        if token is not None and presented is None and keys:
            return verify_operator_token(token, keys, now=time.time())
        key_id = check_operator_key(presented, keys)
    except AuthError as exc:
        refusal = web.HTTPForbidden if exc.status == 403 else web.HTTPUnauthorized
        body = json.dumps({"error": exc.reason})
        raise refusal(text=body, content_type="application/json") from exc
    return Operator(key_id=key_id, name=_display_name(request.headers.get("X-Operator-Name")))
