"""Access control: API keys, short-lived signed tokens, Origin allow-list (pure; ``now`` injected).

Flow: a client (a backend holding a secret key, or a kiosk/embed page holding a scoped,
origin-bound key) calls ``POST /session`` with its key and gets an access token (HMAC-SHA256
signed, a few minutes long). ``POST /offer`` needs that token; its answer carries a session
token, a capability bound to that one call, which opens and reopens ``/ws`` and resumes the
call with a new offer. With no key configured the server is open to loopback clients only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "AccessOptions",
    "AccessPolicy",
    "ApiKey",
    "AuthError",
    "KeyScope",
    "TokenSigner",
    "normalize_origin",
]

_TOKEN_PREFIX = "v1"
_SESSION_PREFIX = "s1"
_MAX_TOKEN_CHARS = 2048
Anonymous = Literal["none", "loopback", "any"]


class AuthError(Exception):
    """Access refused; ``reason`` is safe to show the client (it never holds a secret)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped (ValueError if not one)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {origin!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"an origin has no path, query or fragment: {origin!r}")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyScope:
    """What a key (and the tokens issued for it) may do; ``None`` means unrestricted."""

    name: str
    avatars: frozenset[str] | None = None
    origins: frozenset[str] | None = None

    def check_avatar(self, avatar: str) -> None:
        if self.avatars is not None and avatar not in self.avatars:
            raise AuthError(f"this key may not use avatar {avatar!r}", status=403)

    def check_origin(self, origin: str | None, *, own_host: str | None = None) -> None:
        """An origin-bound scope needs a request from one of its origins (browsers send it),
        or from the server's own pages (``own_host``: the kiosk page framed by a listed site;
        ``frame-ancestors`` keeps other sites from framing it)."""
        if self.origins is None:
            return
        if origin is None:
            raise AuthError("this key is bound to web origins; the request has no Origin", 403)
        try:
            norm = normalize_origin(origin)
            if norm in self.origins or (own_host is not None and _same_host(norm, own_host)):
                return
        except ValueError:
            pass
        raise AuthError("this key may not be used from this origin", status=403)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A configured key. Scoped keys (kiosk, embed) list their avatars and origins."""

    name: str
    secret: str = field(repr=False)
    avatars: frozenset[str] | None = None
    origins: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise ValueError("ApiKey.name must be 1 to 64 characters")
        if len(self.secret) < 16:
            raise ValueError(f"API key {self.name!r} is too short (at least 16 characters)")

    @property
    def scope(self) -> KeyScope:
        return KeyScope(name=self.name, avatars=self.avatars, origins=self.origins)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessOptions:
    """``anonymous``: who may call without a key: nobody, loopback peers, or anyone."""

    keys: tuple[ApiKey, ...] = ()
    token_secret: bytes = field(default=b"", repr=False)  # empty: random per process
    token_ttl_s: float = 300.0
    anonymous: Anonymous = "loopback"
    allowed_origins: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 1.0 <= self.token_ttl_s <= 86400.0:
            raise ValueError("AccessOptions.token_ttl_s must be within 1 s .. 1 day")
        if self.anonymous not in ("none", "loopback", "any"):
            raise ValueError(f"AccessOptions.anonymous must be none|loopback|any: {self.anonymous}")
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("API key names must be unique")


def _same_host(norm_origin: str, host: str) -> bool:
    """``norm_origin`` (normalized) names ``host`` (a Host header, port included or not)."""
    netloc = urlsplit(norm_origin).netloc
    try:
        return netloc in (host.lower(), normalize_origin(f"http://{host}")[len("http://") :])
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies HMAC-SHA256 tokens; ``now`` is wall-clock seconds (``time.time``)."""

    def __init__(self, secret: bytes, *, ttl_s: float) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s

    def _sign(self, message: str) -> str:
        return _b64(hmac.new(self._secret, message.encode("ascii"), hashlib.sha256).digest())

    def issue(self, scope: KeyScope, *, now: float) -> tuple[str, float]:
        """An access token for ``scope``; returns (token, expiry)."""
        exp = int(now + self.ttl_s)
        claims = {
            "k": scope.name,
            "a": sorted(scope.avatars) if scope.avatars is not None else None,
            "o": sorted(scope.origins) if scope.origins is not None else None,
            "exp": exp,
            "n": secrets.token_urlsafe(6),
        }
        body = f"{_TOKEN_PREFIX}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{body}.{self._sign(body)}", float(exp)

    def verify(self, token: str, *, now: float) -> KeyScope:
        """The scope a valid, unexpired token grants; AuthError otherwise."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise AuthError("malformed token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
            raise AuthError("malformed token")
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(body), parts[2]):
            raise AuthError("invalid token signature")
        try:
            claims = json.loads(_unb64(parts[1]))
            exp = float(claims["exp"])
            name = str(claims["k"])
            avatars = claims["a"]
            origins = claims["o"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise AuthError("malformed token") from exc
        if now >= exp:
            raise AuthError("token expired; ask POST /session for a new one")
        return KeyScope(
            name=name,
            avatars=frozenset(map(str, avatars)) if avatars is not None else None,
            origins=frozenset(map(str, origins)) if origins is not None else None,
        )

    def session_token(self, session_id: str) -> str:
        """The capability of one call: reattach its WebSocket, resume it with a new offer."""
        return f"{_SESSION_PREFIX}.{self._sign('session:' + session_id)}"

    def check_session_token(self, session_id: str, token: str | None) -> bool:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        return hmac.compare_digest(self.session_token(session_id), token)


class AccessPolicy:
    """The server's access rules: keys, tokens, anonymous callers and web origins."""

    def __init__(self, options: AccessOptions) -> None:
        self.options = options
        secret = options.token_secret or secrets.token_bytes(32)
        self.signer = TokenSigner(secret, ttl_s=options.token_ttl_s)
        self._digests = [(hashlib.sha256(k.secret.encode()).digest(), k) for k in options.keys]
        origins = set(options.allowed_origins)
        for key in options.keys:
            origins |= key.origins or set()
        self._origins = frozenset(origins)

    @property
    def protected(self) -> bool:
        """True when at least one API key is configured."""
        return bool(self.options.keys)

    def anonymous_allowed(self, *, loopback_peer: bool) -> bool:
        mode = self.options.anonymous
        return mode == "any" or (mode == "loopback" and loopback_peer)

    def authenticate_key(self, presented: str | None, *, loopback_peer: bool) -> KeyScope:
        """The scope of the presented API key (constant-time compare), or the anonymous scope
        where anonymous callers are allowed and no key was presented."""
        if presented:
            digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
            found: ApiKey | None = None
            for candidate, key in self._digests:
                if hmac.compare_digest(candidate, digest):
                    found = key
            if found is None:
                raise AuthError("invalid API key", status=401)
            return found.scope
        if self.anonymous_allowed(loopback_peer=loopback_peer):
            return KeyScope(name="anonymous")
        if not self.protected and self.options.anonymous == "loopback":
            raise AuthError(
                "no API key is configured, so only loopback clients may call; "
                "configure access.keys (see README, Access and security)",
                status=403,
            )
        raise AuthError("an API key is required (Authorization: Bearer KEY)", status=401)

    def authorize_call(self, token: str | None, *, loopback_peer: bool, now: float) -> KeyScope:
        """The scope ``POST /offer`` runs under: its access token's, or anonymous."""
        if token:
            return self.signer.verify(token, now=now)
        return self.authenticate_key(None, loopback_peer=loopback_peer)

    def origin_allowed(self, origin: str, host: str, *, loopback_server: bool) -> bool:
        """Same origin as ``host``, listed, or (loopback server, no keys) a loopback page."""
        try:
            norm = normalize_origin(origin)
        except ValueError:
            return False
        if _same_host(norm, host):
            return True
        if norm in self._origins:
            return True
        hostname = urlsplit(norm).hostname or ""
        return (
            loopback_server and not self.protected and hostname in ("localhost", "127.0.0.1", "::1")
        )

    @property
    def allowed_origins(self) -> frozenset[str]:
        return self._origins
