"""The operator console's HTTP surface (docs/protocol.md, Operator console).

``GET /operator`` serves the page; ``POST /operator/token`` trades an operator key for a
short-lived token for the live feed ``GET /operator/ws?token=T`` (every live call with its
transcript, the handoff queue, changes as they happen); ``GET /operator/calls`` is the same
snapshot once. ``POST /operator/calls/{id}/take``, ``.../say`` ``{"text"}`` and
``.../hand_back`` act on a call; ``.../voice`` ``{"sdp", "type"}`` opens the operator's own
voice peer on a call they have (signaling/server/operator_media.py), ``.../voice_off`` ends
it. Every route but the page needs an operator key or token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCSessionDescription

from inference.dialogue.handoff import HandoffGuardOptions
from signaling.call.handoff import HandoffOptions
from signaling.config import Settings
from signaling.server.calls import RECORDS
from signaling.server.desk import ActionLog, DeskError, OperatorDesk
from signaling.server.guard import body_timed_out, presented_key, rate_limited, read_body
from signaling.server.operator_media import OperatorVoices
from signaling.server.operators import Operator, issue_operator_token, require_operator
from signaling.server.state import STATE
from signaling.server.webhook import HandoffWebhook, WebhookOptions

__all__ = ["DESK", "VOICES", "add_operator_console", "handoff_options"]

log = logging.getLogger(__name__)

DESK: web.AppKey[OperatorDesk] = web.AppKey("avatar_rtc_operator_desk", OperatorDesk)
VOICES: web.AppKey[OperatorVoices] = web.AppKey("avatar_rtc_operator_voices", OperatorVoices)
TOKEN_TTL_S = 600.0
_PAGE_HEADERS = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}


def handoff_options(settings: Settings) -> HandoffOptions:
    """The calls' handoff options; ``enabled: auto`` is on when someone can take a call."""
    h = settings.handoff
    reachable = bool(settings.access.operator_keys) or h.webhook.url is not None
    return HandoffOptions(
        enabled=h.enabled == "on" or (h.enabled == "auto" and reachable),
        company_every_s=h.company_every_s,
        timeout_s=h.timeout_s,
        expected_wait_s=h.expected_wait_s,
        guard=HandoffGuardOptions(asks=h.asks),
    )


def _webhook(settings: Settings) -> HandoffWebhook | None:
    hook = settings.handoff.webhook
    if hook.url is None or hook.secret is None:
        return None
    options = WebhookOptions(
        url=hook.url,
        secret=hook.secret.get_secret_value().encode(),
        timeout_s=hook.timeout_s,
        attempts=hook.attempts,
        backoff_s=hook.backoff_s,
    )
    return HandoffWebhook(options)


def _action_log(app: web.Application) -> ActionLog | None:
    """The call recorder, when the app keeps call records (it records operators' actions)."""
    records = app.get(RECORDS)
    return None if records is None else records.recorder


def add_operator_console(app: web.Application, static: Path) -> OperatorDesk:
    """Create the desk (an observer of every call), its routes and the webhook; ``static``
    is the folder of the pages."""
    state = app[STATE]
    webhook = _webhook(state.settings)
    desk = OperatorDesk(
        state.sessions,
        webhook=webhook,
        actions=lambda: _action_log(app),
        max_text_chars=state.settings.max_text_chars,
    )
    state.observers.add(desk)
    app[DESK] = desk

    def voice_ended(call_id: str, actor: str, reason: str, detail: dict[str, float]) -> None:
        desk.record(call_id, actor, "voice_off", {"reason": reason, **detail})

    voices = OperatorVoices(ice_servers=state.settings.ice_servers, on_end=voice_ended)
    app[VOICES] = voices

    async def close_voices(_: web.Application) -> None:
        await voices.close_all()

    app.on_shutdown.append(close_voices)

    async def page(request: web.Request) -> web.StreamResponse:
        path = static / "operator.html"
        if not path.is_file():
            return web.json_response({"error": "operator page not installed"}, status=404)
        return web.FileResponse(path, headers=_PAGE_HEADERS)

    app.router.add_get("/operator", page)
    app.router.add_post("/operator/token", _token)
    app.router.add_get("/operator/calls", _calls)
    app.router.add_get("/operator/ws", _feed)
    app.router.add_post("/operator/calls/{call_id}/{action}", _act)
    if webhook is not None:

        async def close_webhook(_: web.Application) -> None:
            await webhook.close()

        app.on_cleanup.append(close_webhook)
    return desk


async def _token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    limited = rate_limited(state.http_limiter, request)
    if limited is not None:
        return limited
    operator = require_operator(request)
    key = presented_key(request)
    if key is None:  # a token cannot buy another: tokens end
        return web.json_response({"error": "present an operator key"}, status=401)
    token = issue_operator_token(key, operator, now=time.time(), ttl_s=TOKEN_TTL_S)
    return web.json_response(
        {"token": token, "expires_in_s": TOKEN_TTL_S, "operator": operator.actor}
    )


async def _calls(request: web.Request) -> web.Response:
    require_operator(request)
    return web.json_response(request.app[DESK].snapshot())


async def _act(request: web.Request) -> web.Response:
    operator = require_operator(request)
    desk = request.app[DESK]
    call_id, action = request.match_info["call_id"], request.match_info["action"]
    try:
        if action == "take":
            return web.json_response({"call": desk.take(call_id, operator)})
        if action == "voice":
            return await _voice(request, operator, call_id)
        if action == "voice_off":
            desk.holder(call_id, operator)
            await request.app[VOICES].close(call_id, "the operator turned it off")
        elif action == "hand_back":
            desk.hand_back(call_id, operator)
            await request.app[VOICES].close(call_id, "handed back")
        elif action == "say":
            text = await _text(request)
            if isinstance(text, web.Response):
                return text
            desk.say(call_id, operator, text)
        else:
            return web.json_response({"error": f"unknown action {action!r}"}, status=404)
    except DeskError as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    return web.json_response({"ok": True})


async def _voice(request: web.Request, operator: Operator, call_id: str) -> web.Response:
    """Answer the operator's voice offer on a call they have taken over."""
    desk = request.app[DESK]
    session = desk.holder(call_id, operator)
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    sdp, kind = body.get("sdp"), body.get("type")
    if not isinstance(sdp, str) or kind != "offer" or len(sdp) > 64_000:
        return web.json_response(
            {"error": 'the body must be {"sdp": "...", "type": "offer"} (SDP under 64 kB)'},
            status=400,
        )
    try:
        answer = await request.app[VOICES].connect(
            session, operator.actor, RTCSessionDescription(sdp=sdp, type="offer")
        )
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    desk.record(call_id, operator, "voice_on", {})
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the answer refusing the body."""
    state = request.app[STATE]
    raw = await read_body(request, timeout_s=state.settings.access.body_timeout_s)
    if raw is None:
        return body_timed_out()
    try:
        body = json.loads(raw)
    except ValueError:
        return web.json_response({"error": "the body must be JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    return body


async def _text(request: web.Request) -> str | web.Response:
    """The ``text`` of a JSON body, or the answer refusing the body."""
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    text = body.get("text")
    if not isinstance(text, str):
        return web.json_response({"error": 'the body must be {"text": "..."}'}, status=400)
    return text


async def _feed(request: web.Request) -> web.StreamResponse:
    operator = require_operator(request)  # 401 before the upgrade
    settings = request.app[STATE].settings
    desk = request.app[DESK]
    ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat_s, max_msg_size=4096)
    await ws.prepare(request)
    log.info("operator %s: console connected", operator.actor)
    feed = desk.subscribe()
    sender = asyncio.create_task(_pump(feed, ws))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and _is_ping(msg.data):
                await ws.send_json({"type": "pong"})
    finally:
        sender.cancel()
        desk.unsubscribe(feed)
    return ws


def _is_ping(data: str) -> bool:
    with contextlib.suppress(ValueError):
        message = json.loads(data)
        return isinstance(message, dict) and message.get("type") == "ping"
    return False


async def _pump(feed: asyncio.Queue[dict[str, Any] | None], ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        message = await feed.get()
        if message is None:
            await ws.close(code=1013, message=b"fell behind; reconnect")
            return
        try:
            await ws.send_str(json.dumps(message))  # ASCII: lone surrogates stay escaped
        except ConnectionResetError:
            return
