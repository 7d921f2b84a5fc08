"""Tokens, keys, scopes and origins (pure), and the per-IP token buckets."""

from __future__ import annotations

import pytest

from signaling.server.auth import (
    AccessOptions,
    AccessPolicy,
    ApiKey,
    AuthError,
    KeyScope,
    SpentTokens,
    TokenSigner,
    normalize_origin,
)
from signaling.server.ratelimit import RateLimiter, RateLimitOptions, TokenBucket

SECRET = b"s" * 32
KIOSK = ApiKey(
    name="kiosk",
    secret="kiosk-key-0123456789",
    avatars=frozenset({"astronaut"}),
    origins=frozenset({"https://kiosk.example"}),
)
BACKEND = ApiKey(name="backend", secret="backend-key-0123456789")


def test_token_round_trip_expiry_and_tampering() -> None:
    signer = TokenSigner(SECRET, ttl_s=60)
    token, exp = signer.issue(KIOSK.scope, now=1000.0)
    assert exp == 1060.0
    scope = signer.verify(token, now=1059.0)
    assert scope == KIOSK.scope
    with pytest.raises(AuthError, match="expired"):
        signer.verify(token, now=1060.0)
    head, body, sig = token.split(".")
    with pytest.raises(AuthError, match="signature"):
        signer.verify(f"{head}.{body}x.{sig}", now=1000.0)
    with pytest.raises(AuthError, match="signature"):
        TokenSigner(b"o" * 32, ttl_s=60).verify(token, now=1000.0)
    for junk in ("", "v1", "a.b.c", "v1..", "x" * 5000):
        with pytest.raises(AuthError):
            signer.verify(junk, now=1000.0)
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short", ttl_s=60)


def test_access_tokens_start_one_call() -> None:
    spent = SpentTokens()
    options = AccessOptions(keys=(BACKEND,), token_secret=SECRET, token_ttl_s=60)
    policy = AccessPolicy(options, spent=spent)
    first, _ = policy.signer.issue(BACKEND.scope, now=1000.0)
    second, _ = policy.signer.issue(BACKEND.scope, now=1000.0)
    call = policy.authorize_call
    assert call(first, loopback_peer=False, now=1001.0) == BACKEND.scope
    with pytest.raises(AuthError, match="already used") as exc:
        call(first, loopback_peer=False, now=1002.0)
    assert exc.value.status == 401
    assert call(second, loopback_peer=False, now=1002.0) == BACKEND.scope
    assert len(spent) == 2
    with pytest.raises(AuthError, match="already used"):
        call(second, loopback_peer=True, now=1059.0)
    # Past their expiry the spent tokens are forgotten: the signature check refuses them.
    later, _ = policy.signer.issue(BACKEND.scope, now=1060.0)
    call(later, loopback_peer=False, now=1060.0)
    assert len(spent) == 1
    with pytest.raises(AuthError, match="expired"):
        call(first, loopback_peer=False, now=1060.0)
    with pytest.raises(AuthError, match="signature"):  # tampered: refused, never spent
        call(later[:-1] + ("A" if later[-1] != "A" else "B"), loopback_peer=False, now=1061.0)
    assert len(spent) == 1


def test_session_tokens_are_bound_to_one_call() -> None:
    signer = TokenSigner(SECRET, ttl_s=60)
    t = signer.session_token("abc")
    assert signer.check_session_token("abc", t)
    assert not signer.check_session_token("abd", t)
    assert not signer.check_session_token("abc", None)
    assert not signer.check_session_token("abc", t + "x")


def test_scopes_limit_avatars_and_origins() -> None:
    scope = KIOSK.scope
    scope.check_avatar("astronaut")
    with pytest.raises(AuthError) as exc:
        scope.check_avatar("other")
    assert exc.value.status == 403
    scope.check_origin("https://KIOSK.example:443")
    for bad in (None, "https://evil.example", "null", "https://kiosk.example.evil"):
        with pytest.raises(AuthError):
            scope.check_origin(bad)
    KeyScope(name="any").check_origin(None)
    # The server's own kiosk page, framed by a listed site, calls from the server's origin.
    scope.check_origin("http://avatar.example:8080", own_host="avatar.example:8080")
    with pytest.raises(AuthError):
        scope.check_origin("http://other.example:8080", own_host="avatar.example:8080")


def test_keys_and_anonymous_callers() -> None:
    policy = AccessPolicy(AccessOptions(keys=(KIOSK, BACKEND), anonymous="none"))
    assert policy.protected
    assert policy.authenticate_key("backend-key-0123456789", loopback_peer=False).name == "backend"
    assert policy.authenticate_key("kiosk-key-0123456789", loopback_peer=False) == KIOSK.scope
    with pytest.raises(AuthError, match="invalid API key"):
        policy.authenticate_key("backend-key-01234567890", loopback_peer=True)
    with pytest.raises(AuthError, match="required"):
        policy.authenticate_key(None, loopback_peer=True)
    open_policy = AccessPolicy(AccessOptions())
    assert open_policy.authenticate_key(None, loopback_peer=True).name == "anonymous"
    with pytest.raises(AuthError, match="only loopback") as exc:
        open_policy.authenticate_key(None, loopback_peer=False)
    assert exc.value.status == 403
    assert AccessPolicy(AccessOptions(anonymous="any")).authenticate_key(None, loopback_peer=False)
    with pytest.raises(ValueError, match="too short"):
        ApiKey(name="x", secret="short")
    with pytest.raises(ValueError, match="unique"):
        AccessOptions(keys=(BACKEND, BACKEND))


def test_origins() -> None:
    assert normalize_origin("HTTP://Example.com:80") == "http://example.com"
    assert normalize_origin("https://a.b:8443/") == "https://a.b:8443"
    for bad in ("ftp://x", "null", "https://a.b/path", "example.com"):
        with pytest.raises(ValueError):
            normalize_origin(bad)
    policy = AccessPolicy(AccessOptions(keys=(KIOSK,), allowed_origins=frozenset({"https://a.b"})))
    allowed = policy.origin_allowed
    assert allowed("http://127.0.0.1:8080", "127.0.0.1:8080", loopback_server=True)
    assert allowed("https://a.b", "srv:1", loopback_server=False)
    assert allowed("https://kiosk.example", "srv:1", loopback_server=False)
    assert not allowed("https://evil.example", "srv:1", loopback_server=False)
    assert not allowed("null", "srv:1", loopback_server=False)
    # A loopback page of another port: allowed only on an open, loopback-only server.
    assert not allowed("http://localhost:3000", "127.0.0.1:8080", loopback_server=True)
    open_policy = AccessPolicy(AccessOptions())
    assert open_policy.origin_allowed(
        "http://localhost:3000", "127.0.0.1:8080", loopback_server=True
    )
    assert not open_policy.origin_allowed(
        "http://localhost:3000", "10.0.0.1:8080", loopback_server=False
    )


def test_token_bucket_refills_and_limits() -> None:
    b = TokenBucket(rate_per_s=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.5) == 0.0
    assert b.tokens(100.0) == 3  # never above the burst
    with pytest.raises(ValueError):
        b.take(0.0, cost=4)


def test_rate_limiter_is_per_key_and_bounded() -> None:
    limiter = RateLimiter(RateLimitOptions(rate_per_s=1.0, burst=1, max_keys=2))
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("a", 0.0) > 0
    assert limiter.check("b", 0.0) == 0.0
    assert limiter.check("c", 0.0) == 0.0  # evicts "a", the least recently used
    assert len(limiter) == 2
    assert limiter.check("a", 0.0) == 0.0
    limiter.forget("a")
    assert len(limiter) == 1
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimitOptions(rate_per_s=0, burst=1)
