"""The control WebSocket of a call: authentication, reconnects, rate limits, dispatch."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web

from signaling.call.events import ErrorEvent, Pong, encode_event
from signaling.call.session import Session
from signaling.server.auth import AuthError
from signaling.server.guard import rate_limited
from signaling.server.ratelimit import RateLimiter, RateLimitOptions
from signaling.server.state import AppState
from signaling.server.validation import BadRequest, parse_client_message

__all__ = ["control_socket"]

log = logging.getLogger(__name__)

_MAX_STRIKES = 50  # messages refused by the rate limit before the socket is closed (1008)


async def control_socket(request: web.Request, state: AppState) -> web.StreamResponse:
    """The control socket: ``/ws?session=ID&token=SESSION_TOKEN``. Opening it again (a
    reconnect) replaces the previous socket; closing it with 1000 hangs up the call, any
    other loss leaves the call running for a reconnect or a resume."""
    limited = rate_limited(state.http_limiter, request)
    if limited is not None:
        return limited
    settings = state.settings
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_s, max_msg_size=settings.max_text_chars * 4 + 1024
    )
    await ws.prepare(request)
    session = state.sessions.get(request.query.get("session", ""))
    if session is None or session.closed.is_set():
        await ws.close(code=4404, message=b"unknown session")
        return ws
    if not state.access.signer.check_session_token(session.id, request.query.get("token")):
        await ws.close(code=4401, message=b"invalid or missing session token")
        return ws
    scope = state.scopes.get(session.id)
    try:
        if scope is not None:
            scope.check_origin(request.headers.get("Origin"), own_host=request.host)
    except AuthError as exc:
        await ws.close(code=4403, message=exc.reason.encode()[:120])
        return ws
    previous = state.sockets.get(session.id)
    state.sockets[session.id] = ws
    if previous is not None:
        await previous.close(code=4409, message=b"replaced by a newer connection")
    session.ws_attached(True)
    sender = asyncio.create_task(_pump_events(session, ws))
    limiter = RateLimiter(
        RateLimitOptions(
            rate_per_s=settings.access.messages_per_s,
            burst=settings.access.message_burst,
            max_keys=1,
        )
    )
    strikes = 0
    flooded = False
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if limiter.check("", time.monotonic()) > 0:
                strikes += 1
                if strikes >= _MAX_STRIKES:
                    flooded = True  # our close: the call stays for a reconnect
                    await ws.close(code=1008, message=b"too many messages")
                    break
                session.emit(ErrorEvent(reason="too many messages; slow down"))
                continue
            session.touch()
            if msg.type != WSMsgType.TEXT:
                session.emit(ErrorEvent(reason="only JSON text messages are accepted"))
                continue
            _handle_client_message(session, msg.data, settings.max_text_chars, state.turn_limiter)
    finally:
        sender.cancel()
        current = state.sockets.get(session.id) is ws
        if current:
            del state.sockets[session.id]
        session.ws_attached(False)
        if current and not flooded and ws.close_code == 1000:  # the client hung up
            session.close_reason = "client hung up"
            await session.close()
    return ws


def _handle_client_message(session: Session, data: str, max_text: int, turns: RateLimiter) -> None:
    try:
        message = parse_client_message(data, max_text_chars=max_text)
    except BadRequest as exc:
        session.emit(ErrorEvent(reason=exc.reason))
        return
    if message.type == "ping":
        session.emit(Pong(t=message.t))
    elif message.type == "interrupt":
        session.interrupt()
    elif message.type == "text" and message.text is not None:
        wait = turns.check(session.id, time.monotonic())  # per call, across reconnects
        if wait > 0:
            session.emit(ErrorEvent(reason=_too_many_turns(turns.options.rate_per_s, wait)))
            return
        session.say_text(message.text)


def _too_many_turns(rate_per_s: float, wait_s: float) -> str:
    return (
        f"too many typed messages: at most {rate_per_s:g} new replies per second; "
        f"this one was ignored and the reply goes on (send again in {wait_s:.1f} s)"
    )


async def _pump_events(session: Session, ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        event = await session.next_event()
        try:
            text = encode_event(event)
        except ValueError as exc:  # NaN or Infinity: skip it, the events after it still go
            log.warning("session %s: dropped a %s event: %s", session.id, event.type, exc)
            continue
        try:
            await ws.send_str(text)
        except ConnectionResetError:
            return
