"""Node ids in session ids, where nodes live, the signed forwarding header, and the
``cluster`` settings that describe them."""

from __future__ import annotations

import json

import pytest

from signaling.config import ConfigError, load_settings
from signaling.server.nodes import (
    ForwardSigner,
    NodeMap,
    check_node_id,
    new_session_id,
    node_of,
)
from signaling.server.validation import parse_offer

SECRET = b"a-shared-secret-of-the-nodes-0123"
SDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AA\r\n"


def test_session_ids_name_their_node_and_pass_the_offer_check() -> None:
    ids = {new_session_id("media-2") for _ in range(100)}
    assert len(ids) == 100
    for session in ids:
        assert node_of(session) == "media-2"
        body = json.dumps({"sdp": SDP, "type": "offer", "session": session, "token": "s1.x"})
        assert parse_offer(body.encode(), max_bytes=65536).session == session
    lone = new_session_id(None)
    assert len(lone) == 24 and node_of(lone) is None


@pytest.mark.parametrize(
    ("session", "node"),
    [
        ("a_" + "0" * 24, "a"),
        ("media-1-b_ff", "media-1-b"),
        ("0123456789abcdef0123", None),  # a lone node's id
        ("_abc", None),
        ("Media_abc", None),  # upper case is no node id
        ("-x_abc", None),
        ("x_", None),
        ("a" * 33 + "_abc", None),
    ],
)
def test_node_of(session: str, node: str | None) -> None:
    assert node_of(session) == node


@pytest.mark.parametrize("bad", ["", "-a", "a-", "A", "a_b", "a.b", "a" * 33])
def test_bad_node_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a node id"):
        check_node_id(bad)


def test_node_map_lists_then_template() -> None:
    nodes = NodeMap(
        self_id="media-1",
        nodes={"media-1": "http://10.0.0.1:8080/", "media-2": "https://10.0.0.2"},
        url_template="http://{node}.avatar-media-nodes:8080",
    )
    assert nodes.url_of("media-1") == "http://10.0.0.1:8080"
    assert nodes.url_of("media-2") == "https://10.0.0.2"
    assert nodes.url_of("avatar-media-3") == "http://avatar-media-3.avatar-media-nodes:8080"
    assert nodes.url_of("Evil.host") is None
    assert NodeMap(self_id="a", nodes={"a": "http://x:1"}).url_of("b") is None
    with pytest.raises(ValueError, match="no path"):
        NodeMap(self_id="a", nodes={"b": "http://x:1/path"})
    with pytest.raises(ValueError, match="must hold"):
        NodeMap(self_id="a", url_template="http://x:1")


def test_forward_header_round_trip_and_tampering() -> None:
    signer = ForwardSigner(SECRET)
    header = signer.sign(
        source="media-2",
        target="media-1",
        client_ip="203.0.113.7",
        method="GET",
        path_qs="/ws?session=media-1_ab&token=t",
        now=1000.0,
    )
    ok = signer.verify(header, method="GET", path_qs="/ws?session=media-1_ab&token=t", now=1010)
    assert ok is not None and (ok.source, ok.target, ok.client_ip) == (
        "media-2",
        "media-1",
        "203.0.113.7",
    )
    assert signer.verify(header, method="GET", path_qs="/ws?session=media-1_cd", now=1000) is None
    assert (
        signer.verify(header, method="POST", path_qs="/ws?session=media-1_ab&token=t", now=1000)
        is None
    )
    assert (
        signer.verify(header, method="GET", path_qs="/ws?session=media-1_ab&token=t", now=1100)
        is None
    )
    forged = header.replace("203.0.113.7", "127.0.0.1")
    assert (
        signer.verify(forged, method="GET", path_qs="/ws?session=media-1_ab&token=t", now=1000)
        is None
    )
    other = ForwardSigner(b"another-secret-of-16-or-more")
    assert (
        other.verify(header, method="GET", path_qs="/ws?session=media-1_ab&token=t", now=1000)
        is None
    )
    assert signer.verify("garbage", method="GET", path_qs="/", now=1000) is None
    with pytest.raises(ValueError, match="secret"):
        ForwardSigner(b"short")


def test_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="token_secret"):
        load_settings(overrides={"cluster": {"node_id": "media-1"}})
    with pytest.raises(ConfigError, match="node_id"):
        load_settings(overrides={"cluster": {"nodes": {"a": "http://x:1"}}})
    with pytest.raises(ConfigError, match="not a node id"):
        load_settings(
            overrides={"cluster": {"node_id": "Media_1"}, "access": {"token_secret": "x" * 16}}
        )
    monkeypatch.setenv("AVATAR_RTC_CLUSTER__NODE_ID", "media-1")
    monkeypatch.setenv("AVATAR_RTC_CLUSTER__NODES", '{"media-1": "http://10.0.0.1:8080"}')
    monkeypatch.setenv("AVATAR_RTC_ACCESS__TOKEN_SECRET", "x" * 32)
    settings = load_settings()
    assert settings.cluster.node_id == "media-1"
    assert settings.cluster.nodes == {"media-1": "http://10.0.0.1:8080"}


def test_a_lone_node_is_the_default() -> None:
    settings = load_settings()
    assert settings.cluster.node_id is None and not settings.cluster.nodes
