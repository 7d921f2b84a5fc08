"""Forwarding between media nodes: a session's requests reach the node that holds it.

Behind any load balancer, even a round-robin one, a call's later requests may land on a node
that does not hold it. The session id names its node (:mod:`signaling.server.nodes`), so a
middleware sends ``GET /ws`` (the WebSocket, relayed both ways with its close codes), a resume
(``POST /offer`` with ``session``) and ``POST /operator/calls/{id}/...`` on to the owner,
signed so the owner knows the caller's address. Other requests stay where they land. An
unknown node is answered as an unknown session; an owner that does not answer gets ``502``
(``/ws``: closed with 4502) within ``cluster.forward_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.typedefs import Middleware

from signaling.config import Settings
from signaling.server.guard import body_timed_out, client_ip, read_body
from signaling.server.nodes import (
    FORWARD_HEADER,
    ForwardSigner,
    NodeMap,
    new_session_id,
    node_of,
)
from signaling.server.state import STATE, AppState

__all__ = ["FORWARDER", "Forwarder", "install_forwarding", "session_id_for"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# request headers the owner needs to judge the request as the first node would have
_PASSED = ("Host", "Origin", "Authorization", "X-API-Key", "X-Operator-Name", "Content-Type")
_ANSWERED = ("Content-Type", "Retry-After")  # headers of the owner's answer sent back
_CONNECT_S = 3.0  # an owner that does not accept the connection within this is down
_SENDABLE = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011})
CLOSE_UNREACHABLE = 4502  # /ws: the node holding the call does not answer


class Forwarder:
    """This node's view of the others: whose a session is, and the client that reaches them."""

    def __init__(self, nodes: NodeMap, signer: ForwardSigner, *, timeout_s: float) -> None:
        self.nodes = nodes
        self.signer = signer
        self.timeout_s = timeout_s
        self._client: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()  # relayed control sockets

    @property
    def node_id(self) -> str:
        return self.nodes.self_id

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=_CONNECT_S)
            self._client = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._client

    def headers(self, request: web.Request, target: str) -> dict[str, str]:
        """What the owner gets: the caller's own headers and the signed forwarding header."""
        out = {k: request.headers[k] for k in _PASSED if k in request.headers}
        out[FORWARD_HEADER] = self.signer.sign(
            source=self.node_id,
            target=target,
            client_ip=client_ip(request),
            method=request.method,
            path_qs=request.raw_path,
            now=time.time(),
        )
        return out

    @contextlib.contextmanager
    def relaying(self, ws: web.WebSocketResponse) -> Iterator[None]:
        """Keep ``ws`` among the relayed sockets (closed when this node shuts down)."""
        self._sockets.add(ws)
        try:
            yield
        finally:
            self._sockets.discard(ws)

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"node shutting down; reconnect")
        if self._client is not None:
            await self._client.close()


FORWARDER: web.AppKey[Forwarder] = web.AppKey("avatar_rtc_forwarder", Forwarder)


def install_forwarding(app: web.Application, settings: Settings) -> None:
    """When ``cluster.node_id`` is set: the forwarding middleware and its client."""
    cluster = settings.cluster
    if cluster.node_id is None:
        return
    secret = settings.access.token_secret
    assert secret is not None  # the settings refuse a cluster without a shared secret
    nodes = NodeMap(self_id=cluster.node_id, nodes=cluster.nodes, url_template=cluster.node_url)
    forwarder = Forwarder(
        nodes,
        ForwardSigner(secret.get_secret_value().encode()),
        timeout_s=cluster.forward_timeout_s,
    )
    app[FORWARDER] = forwarder
    app.middlewares.append(_middleware(forwarder))

    async def close(_: web.Application) -> None:
        await forwarder.close()

    app.on_shutdown.append(close)


def session_id_for(app: web.Application) -> str:
    """A new session id, naming this node when it is one of several."""
    forwarder = app.get(FORWARDER)
    return new_session_id(None if forwarder is None else forwarder.node_id)


def _middleware(forwarder: Forwarder) -> Middleware:
    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get(FORWARD_HEADER)
        if header is not None:
            forwarded = forwarder.signer.verify(
                header, method=request.method, path_qs=request.raw_path, now=time.time()
            )
            if forwarded is not None:
                if forwarded.target != forwarder.node_id:
                    return _misrouted(forwarded.source, forwarded.target, forwarder.node_id)
                return await handler(request.clone(remote=forwarded.client_ip))
        state = request.app[STATE]
        session = await _session_of(request, state)
        if isinstance(session, web.Response):
            return session
        node = None if session is None else node_of(session)
        if node is None or node == forwarder.node_id:
            return await handler(request)
        url = forwarder.nodes.url_of(node)
        if request.path == "/ws":
            return await _relay_ws(request, state, forwarder, node, url)
        if url is None:
            return _error(
                404, f"unknown or expired session (no media node {node!r}); start a new call"
            )
        return await _forward_http(request, forwarder, node, url)

    return route


async def _session_of(request: web.Request, state: AppState) -> str | web.Response | None:
    """The session a request is about (None: about none), or the answer to a body that did
    not come in time."""
    if request.method == "GET" and request.path == "/ws":
        return request.query.get("session") or None
    if request.method != "POST":
        return None
    if request.path.startswith("/operator/calls/"):
        return request.match_info.get("call_id") or None
    if request.path != "/offer":
        return None
    try:
        raw = await read_body(request, timeout_s=state.settings.access.body_timeout_s)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "offer too large")
    if raw is None:
        return body_timed_out()
    with contextlib.suppress(ValueError, RecursionError):
        data = json.loads(raw)
        session = data.get("session") if isinstance(data, dict) else None
        return session if isinstance(session, str) and session else None
    return None  # the handler answers the bad JSON (its parser names the problem)


async def _forward_http(
    request: web.Request, forwarder: Forwarder, node: str, url: str
) -> web.Response:
    body = await request.read()
    try:
        async with forwarder.client.request(
            request.method,
            url + request.raw_path,
            data=body,
            headers=forwarder.headers(request, node),
            allow_redirects=False,
        ) as answer:
            data = await answer.read()
            headers = {k: answer.headers[k] for k in _ANSWERED if k in answer.headers}
            return web.Response(status=answer.status, body=data, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("media node %s at %s did not answer %s: %s", node, url, request.path, exc)
        return _error(
            502, f"the media node holding this call ({node}) does not answer; start a new call"
        )


async def _relay_ws(
    request: web.Request, state: AppState, forwarder: Forwarder, node: str, url: str | None
) -> web.WebSocketResponse:
    """The control socket, relayed to its owner both ways; either side's close (its code
    and reason) closes the other, so closing with 1000 still hangs up."""
    settings = state.settings
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_s, max_msg_size=settings.max_text_chars * 4 + 1024
    )
    await ws.prepare(request)
    if url is None:
        await ws.close(code=4404, message=_reason(f"unknown session (no media node {node!r})"))
        return ws
    try:
        upstream = await forwarder.client.ws_connect(
            url + request.raw_path,
            headers=forwarder.headers(request, node),
            heartbeat=4 * settings.ws_heartbeat_s,  # an owner gone silent (its pings too)
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            autoclose=False,  # the owner's close is answered with its own code, as callers do
            max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:  # the owner refused the upgrade
        log.info("media node %s refused a control socket: %s", node, exc.status)
        code = 4429 if exc.status == 429 else CLOSE_UNREACHABLE
        await ws.close(code=code, message=_reason(f"media node {node} answered {exc.status}"))
        return ws
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("media node %s at %s did not answer /ws: %s", node, url, exc)
        reason = f"the media node holding this call ({node}) does not answer"
        await ws.close(code=CLOSE_UNREACHABLE, message=_reason(reason))
        return ws
    log.info("control socket of session %s relayed to media node %s", _session(request), node)
    try:
        with forwarder.relaying(ws):
            await _pump_both(ws, upstream)
    finally:
        await upstream.close()
    return ws


async def _pump_both(ws: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    from_client = asyncio.create_task(_client_to_owner(ws, upstream))
    from_owner = asyncio.create_task(_owner_to_client(upstream, ws))
    done, pending = await asyncio.wait(
        {from_client, from_owner}, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if from_client in done:  # the caller left: tell the owner how (1000 hangs up)
        await upstream.close(code=_sendable(ws.close_code), message=b"caller closed")
    else:
        reason = from_owner.result() if not from_owner.cancelled() else b""
        code = _sendable(upstream.close_code)
        await upstream.close(code=code)
        await ws.close(code=code, message=reason)


async def _client_to_owner(
    ws: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await upstream.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await upstream.send_bytes(msg.data)


async def _owner_to_client(
    upstream: aiohttp.ClientWebSocketResponse, ws: web.WebSocketResponse
) -> bytes:
    """Relay until the owner closes; returns its close reason."""
    while True:
        msg = await upstream.receive()
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.CLOSE:
            return str(msg.extra or "").encode()[:120]
        elif msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return b""


def _sendable(code: int | None) -> int:
    """A close code that may go in a close frame (1005 and 1006 may not)."""
    if code is None:
        return 1001
    return code if code in _SENDABLE or 3000 <= code <= 4999 else 1001


def _session(request: web.Request) -> str:
    return request.query.get("session", "")[:64]


def _reason(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes of UTF-8."""
    return text.encode()[:120]


def _misrouted(source: str, target: str, own: str) -> web.Response:
    reason = (
        f"misconfigured cluster: node {source} forwarded a request for node {target} "
        f"to this node ({own}); check cluster.nodes / cluster.node_url on {source}"
    )
    log.error(reason)
    return _error(502, reason)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
