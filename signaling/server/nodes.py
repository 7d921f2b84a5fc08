"""Media nodes of one deployment (pure; ``now`` injected).

Several ``avatar-rtc serve`` processes ("media nodes") sit behind one address. Each has a
node id, and every session id it makes starts with it: ``media-2_9f3a...``. A request about a
session (``/ws``, a resume, an operator's action) that reaches another node is forwarded to
the owner (:mod:`signaling.server.forward`); :class:`NodeMap` says where a node id lives, and
:class:`ForwardSigner` signs the forwarded request so the owner trusts the caller's address it
carries. docs/deploy.md (Several media nodes) explains the design.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "FORWARD_HEADER",
    "ForwardSigner",
    "Forwarded",
    "NodeMap",
    "check_node_id",
    "check_node_url",
    "new_session_id",
    "node_of",
]

FORWARD_HEADER = "X-Avatar-Forwarded"
_NODE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_SEPARATOR = "_"  # never in a node id, never in the hex part after it
_RANDOM_HEX = 24  # 96 random bits, as the ids of a lone node
_MAX_SKEW_S = 30.0  # clocks of the nodes may differ this much (NTP keeps them far closer)


def check_node_id(node_id: str) -> str:
    """``node_id`` if it is 1-32 of ``a-z 0-9 -`` (not at either end), else ValueError."""
    if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
        raise ValueError(
            f"not a node id: {node_id!r} (1 to 32 of a-z, 0-9 and '-', not at either end)"
        )
    return node_id


def check_node_url(url: str) -> str:
    """``url`` without a trailing slash if it is ``http(s)://host[:port]``, else ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL of a node: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a node's URL has no path, query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def new_session_id(node_id: str | None) -> str:
    """A fresh session id: 24 hex digits, after ``NODE_`` when the node has an id."""
    random = secrets.token_hex(_RANDOM_HEX // 2)
    return random if node_id is None else f"{node_id}{_SEPARATOR}{random}"


def node_of(session_id: str) -> str | None:
    """The node id a session id starts with; None for an id of a lone node (no prefix),
    or a prefix that is no node id."""
    node, sep, rest = session_id.rpartition(_SEPARATOR)
    if not sep or not rest or not _NODE_ID.match(node):
        return None
    return node


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeMap:
    """Where each node answers, seen from the other nodes: a list of ``id -> URL``, and for
    ids not on it, ``url_template`` with ``{node}`` (e.g. a StatefulSet's pods behind a
    headless Service: ``http://{node}.avatar-media:8080``)."""

    self_id: str
    nodes: Mapping[str, str] = field(default_factory=dict)
    url_template: str | None = None

    def __post_init__(self) -> None:
        check_node_id(self.self_id)
        for node, url in self.nodes.items():
            check_node_id(node)
            check_node_url(url)
        if self.url_template is not None:
            if self.url_template.count("{node}") != 1:
                raise ValueError("NodeMap.url_template must hold {node} once")
            check_node_url(self.url_template.replace("{node}", "n"))

    def url_of(self, node: str) -> str | None:
        """The base URL of ``node`` (no trailing slash), None when it is not a known node."""
        if node in self.nodes:
            return check_node_url(self.nodes[node])
        if self.url_template is not None and _NODE_ID.match(node):
            return check_node_url(self.url_template.replace("{node}", node))
        return None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A request another node forwarded: for node ``target``, from ``source``, on behalf of
    the caller at ``client_ip``."""

    source: str
    target: str
    client_ip: str


class ForwardSigner:
    """Signs and checks the ``X-Avatar-Forwarded`` header with a key derived from the token
    secret every node shares: ``v1;SOURCE;TARGET;CLIENT_IP;UNIX_TIME;SIGNATURE``, the
    signature binding the method and the path with its query."""

    def __init__(self, token_secret: bytes) -> None:
        if len(token_secret) < 16:
            raise ValueError("forwarding needs the shared token secret (at least 16 bytes)")
        self._key = hmac.new(token_secret, b"avatar-rtc node forwarding", hashlib.sha256).digest()

    def _mac(self, fields: str, method: str, path_qs: str) -> str:
        message = f"{fields}|{method.upper()}|{path_qs}".encode("utf-8", "replace")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(
        self, *, source: str, target: str, client_ip: str, method: str, path_qs: str, now: float
    ) -> str:
        ip = client_ip.replace(";", "")
        fields = f"v1;{source};{target};{ip};{int(now)}"
        return f"{fields};{self._mac(fields, method, path_qs)}"

    def verify(self, header: str, *, method: str, path_qs: str, now: float) -> Forwarded | None:
        """What a well-signed, fresh header says; None for any other header."""
        parts = header.split(";")
        if len(parts) != 6 or parts[0] != "v1":
            return None
        fields, mac = ";".join(parts[:5]), parts[5]
        if not hmac.compare_digest(self._mac(fields, method, path_qs), mac):
            return None
        try:
            stamp = float(parts[4])
        except ValueError:
            return None
        if abs(now - stamp) > _MAX_SKEW_S:
            return None
        return Forwarded(source=parts[1], target=parts[2], client_ip=parts[3])
