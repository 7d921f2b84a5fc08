"""Access control: API keys, short-lived signed tokens, Origin allow-list (pure; ``now`` injected).

Flow: a client (a backend holding a secret key, or a kiosk/embed page holding a scoped,
origin-bound key) calls ``POST /session`` with its key and gets an access token (HMAC-SHA256
signed, a few minutes long, good for one call). ``POST /offer`` spends that token; its answer
carries a session token, a capability bound to that one call, which opens and reopens ``/ws``
and resumes the call with a new offer. With no key configured the server is open to loopback
clients only. ``HostPolicy`` refuses requests whose ``Host`` names a site other than this
server (DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

__all__ = [
    "AccessOptions",
    "AccessPolicy",
    "ApiKey",
    "AuthError",
    "Grant",
    "HostPolicy",
    "KeyScope",
    "SpentTokens",
    "TokenLedger",
    "TokenSigner",
    "normalize_host_name",
    "normalize_origin",
]

_TOKEN_PREFIX = "v1"
_SESSION_PREFIX = "s1"
_MAX_TOKEN_CHARS = 2048
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
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


def normalize_host_name(host: str) -> str:
    """A DNS name in lower case without a trailing dot, or ``*`` (ValueError if neither)."""
    name = host.strip().lower().rstrip(".")
    if name == "*":
        return name
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"not a host name: {host!r}")
    return name


def _host_of(header: str) -> str | None:
    """The host of a ``Host`` header (port dropped, IPv6 unbracketed), None if malformed."""
    try:
        parts = urlsplit(f"//{header.strip()}")
        hostname, _ = parts.hostname, parts.port  # the port: ValueError when malformed
    except ValueError:
        return None
    return hostname.rstrip(".") if hostname else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPolicy:
    """Which ``Host`` headers the server answers: any IP address, ``localhost`` (and
    ``*.localhost``), the name it binds to, and ``public_hosts`` (``*``: any name). A DNS
    rebinding page always sends its own name, never an address, so it is refused."""

    bind_host: str
    public_hosts: frozenset[str] = frozenset()

    def allows(self, header: str | None) -> bool:
        if header is None or "*" in self.public_hosts:
            return True  # no Host: not a browser (they always send one)
        host = _host_of(header)
        if host is None:
            return False
        if _is_ip(host) or host == "localhost" or host.endswith(".localhost"):
            return True
        return host == self.bind_host.lower().rstrip(".") or host in self.public_hosts


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
    max_calls: int | None = None  # concurrent calls under this key; None: no cap of its own

    def __post_init__(self) -> None:
        if self.max_calls is not None and self.max_calls < 1:
            raise ValueError(f"API key {self.name!r}: max_calls must be at least 1")
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


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid access token grants: its scope, until ``expires``; ``id`` names the token."""

    scope: KeyScope
    expires: float
    id: str


class TokenLedger(Protocol):
    """Where spent access tokens are remembered until they expire: this process
    (:class:`SpentTokens`) or every media node of a site (``signaling.server.shared``)."""

    def spend(self, grant: Grant, *, now: float) -> None:
        """Mark ``grant``'s token used; AuthError (401) if it already was."""
        ...


class SpentTokens:
    """Access tokens already used, each remembered until it expires (the signature then
    refuses it anyway), so memory stays bounded by the tokens issued within one lifetime."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def spend(self, grant: Grant, *, now: float) -> None:
        """Mark ``grant``'s token used; AuthError (401) if it already was."""
        self._forget_expired(now)
        if grant.id in self._expiry:
            raise AuthError("access token already used; ask POST /session for a new one")
        self._expiry[grant.id] = grant.expires
        heapq.heappush(self._heap, (grant.expires, grant.id))

    def _forget_expired(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, token_id = heapq.heappop(self._heap)
            del self._expiry[token_id]

    def __len__(self) -> int:
        return len(self._expiry)


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
        return self.grant(token, now=now).scope

    def grant(self, token: str, *, now: float) -> Grant:
        """What a valid, unexpired token grants (its id: the signature); AuthError otherwise."""
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
        scope = KeyScope(
            name=name,
            avatars=frozenset(map(str, avatars)) if avatars is not None else None,
            origins=frozenset(map(str, origins)) if origins is not None else None,
        )
        return Grant(scope=scope, expires=exp, id=parts[2])

    def session_token(self, session_id: str) -> str:
        """The capability of one call: reattach its WebSocket, resume it with a new offer."""
        return f"{_SESSION_PREFIX}.{self._sign('session:' + session_id)}"

    def check_session_token(self, session_id: str, token: str | None) -> bool:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        return hmac.compare_digest(self.session_token(session_id), token)


class AccessPolicy:
    """The server's access rules: keys, tokens, anonymous callers and web origins."""

    def __init__(self, options: AccessOptions, *, spent: TokenLedger | None = None) -> None:
        self.options = options
        secret = options.token_secret or secrets.token_bytes(32)
        self.signer = TokenSigner(secret, ttl_s=options.token_ttl_s)
        self.spent: TokenLedger = spent if spent is not None else SpentTokens()
        self._digests = [(hashlib.sha256(k.secret.encode()).digest(), k) for k in options.keys]
        self._max_calls = {k.name: k.max_calls for k in options.keys}
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

    def max_calls(self, key_name: str) -> int | None:
        """The concurrent calls key ``key_name`` may hold (None: no cap of its own)."""
        return self._max_calls.get(key_name)

    def authorize_call(
        self,
        token: str | None,
        *,
        loopback_peer: bool,
        now: float,
        admit: Callable[[KeyScope], None] | None = None,
    ) -> KeyScope:
        """The scope ``POST /offer`` runs under: its access token's (which this spends: a
        token starts one call), or anonymous. ``admit`` may refuse the scope (AuthError)
        before the token is spent, so a call refused for a cap keeps its token."""
        if token:
            grant = self.signer.grant(token, now=now)
            if admit is not None:
                admit(grant.scope)
            self.spent.spend(grant, now=now)
            return grant.scope
        scope = self.authenticate_key(None, loopback_peer=loopback_peer)
        if admit is not None:
            admit(scope)
        return scope

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
