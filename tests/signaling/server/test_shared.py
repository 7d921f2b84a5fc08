"""Single-use access tokens across media nodes, through the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest
import redis

from signaling.config import ClusterSettings
from signaling.server.auth import AccessOptions, AccessPolicy, ApiKey, AuthError
from signaling.server.shared import RedisSpentTokens, check_shared_state

REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = b"n" * 32
KEY = ApiKey(name="backend", secret="backend-secret-0123456789")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    mine = f"avatar-rtc-test:{secrets.token_hex(6)}:"
    yield mine
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{mine}*"):
        client.delete(key)
    client.close()


def _node(prefix: str) -> AccessPolicy:
    options = AccessOptions(keys=(KEY,), token_secret=SECRET, token_ttl_s=60)
    return AccessPolicy(options, spent=RedisSpentTokens(REDIS_URL, prefix=prefix))


def test_a_token_starts_one_call_across_nodes(prefix: str) -> None:
    a, b = _node(prefix), _node(prefix)  # two media nodes of one site
    token, _ = a.signer.issue(KEY.scope, now=1000.0)
    assert b.authorize_call(token, loopback_peer=False, now=1001.0) == KEY.scope
    for node in (a, b):
        with pytest.raises(AuthError, match="already used") as exc:
            node.authorize_call(token, loopback_peer=False, now=1002.0)
        assert exc.value.status == 401
    other, _ = b.signer.issue(KEY.scope, now=1000.0)
    assert a.authorize_call(other, loopback_peer=False, now=1003.0) == KEY.scope


def test_spent_tokens_expire_with_the_token(prefix: str) -> None:
    import time

    node = _node(prefix)
    now = time.time()
    token, expires = node.signer.issue(KEY.scope, now=now)
    node.authorize_call(token, loopback_peer=False, now=now)
    client = redis.Redis.from_url(REDIS_URL)
    [key] = list(client.scan_iter(f"{prefix}*"))
    ttl = client.ttl(key)
    client.close()
    assert 0 < ttl <= expires - now + 2  # Redis forgets it soon after the signature would


def test_redis_down_refuses_with_503_and_keeps_the_token(prefix: str) -> None:
    port = _closed_port()
    options = AccessOptions(keys=(KEY,), token_secret=SECRET, token_ttl_s=60)
    down = AccessPolicy(
        options, spent=RedisSpentTokens(f"redis://127.0.0.1:{port}/0", prefix=prefix)
    )
    token, _ = down.signer.issue(KEY.scope, now=1000.0)
    with pytest.raises(AuthError, match="Redis") as exc:
        down.authorize_call(token, loopback_peer=False, now=1001.0)
    assert exc.value.status == 503
    # nothing was spent: with Redis back (another node) the same token still starts a call
    assert _node(prefix).authorize_call(token, loopback_peer=False, now=1002.0) == KEY.scope


def test_the_setting_and_the_preflight_check() -> None:
    assert check_shared_state(REDIS_URL) is None
    reason = check_shared_state(f"redis://127.0.0.1:{_closed_port()}/0")
    assert reason is not None and "does not answer" in reason
    settings = ClusterSettings(node_id="media-1", shared_state=REDIS_URL)
    assert settings.shared_state == REDIS_URL
    with pytest.raises(ValueError, match="redis://"):
        ClusterSettings(node_id="media-1", shared_state="http://127.0.0.1:6379")


def test_config_check_names_a_redis_that_does_not_answer() -> None:
    from signaling.config import Settings
    from signaling.preflight import startup_problems

    url = f"redis://127.0.0.1:{_closed_port()}/0"
    settings = Settings(
        cluster={"node_id": "media-1", "shared_state": url},  # type: ignore[arg-type]
        access={"token_secret": "s" * 32},  # type: ignore[arg-type]
    )
    problems = startup_problems(settings)
    assert any(p.startswith("cluster.shared_state") and url in p for p in problems), problems
