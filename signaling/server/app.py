"""The aiohttp application: offer/answer, control WebSocket, health, avatars, static files."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCSessionDescription

from inference.avatar import AvatarError, CorruptAvatar, InvalidName
from inference.cluster.admission import Admission, ClusterStatus, Refusal
from inference.render.base import HealthReporter
from media.congestion.loop import AdaptationOptions
from signaling.call.early_asr import EarlyAsrOptions
from signaling.call.observers import CallInfo
from signaling.call.session import Session, SessionOptions
from signaling.config import Settings
from signaling.ice import enable_loopback_candidates, is_loopback_host
from signaling.metrics import CONTENT_TYPE_LATEST, Metrics
from signaling.server.auth import AuthError
from signaling.server.calls import flush_records, install_records, is_recorded, start_recording
from signaling.server.candidates import filter_candidates
from signaling.server.console import add_operator_console, handoff_options
from signaling.server.control import control_socket
from signaling.server.forward import install_forwarding, session_id_for
from signaling.server.guard import (
    RedactedAccessLogger,
    body_timed_out,
    client_ip,
    host_middleware,
    is_loopback_peer,
    origin_middleware,
    presented_key,
    rate_limited,
    read_body,
)
from signaling.server.listener import ConnectionLimits, start_server
from signaling.server.logs import bind_session
from signaling.server.resumes import RESUMES, ResumeGuard, ResumeRefused, resume_limits
from signaling.server.state import STATE, AppState, access_options
from signaling.server.validation import (
    BadRequest,
    OfferRequest,
    parse_offer,
    parse_session_request,
)
from signaling.stages.services import Services, load_services

__all__ = [
    "AppState",
    "access_options",
    "connection_limits",
    "create_app",
    "drain",
    "serve",
    "static_dir",
]

log = logging.getLogger(__name__)


def static_dir(package: Path | None = None) -> Path:
    """The folder of the browser pages, found from ``package`` (this ``signaling`` package's
    folder if None): ``signaling/static`` in an installed wheel, else ``static/`` beside the
    packages (a source checkout, editable installs); the installed place if neither exists."""
    package = Path(str(resources.files("signaling"))) if package is None else package
    installed, checkout = package / "static", package.parent / "static"
    return checkout if not installed.is_dir() and checkout.is_dir() else installed


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    loader: Callable[[Settings], Awaitable[Services]] = load_services,
) -> web.Application:
    """Build the app. Without ``services``, ``loader`` loads the models in the background
    at startup (``/health/ready`` answers 503 until it is done)."""
    state = AppState(
        settings=settings,
        services=services,
        load=loader,
        metrics=Metrics(enabled=settings.metrics_enabled),
    )
    loopback = is_loopback_host(settings.host)
    app = web.Application(
        client_max_size=settings.max_sdp_bytes + 4096,
        middlewares=[
            host_middleware(state.hosts),
            origin_middleware(state.access, loopback_server=loopback),
        ],
    )
    app[STATE] = state
    install_forwarding(app, settings)  # several media nodes: a session's requests to its node
    if loopback:
        enable_loopback_candidates()
    app.router.add_post("/session", _issue_token)
    app.router.add_post("/offer", _offer)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/avatars", _avatars)
    app.router.add_get("/metrics", _metrics)
    install_records(app, state)  # GET /calls, and the recorder of every call
    add_operator_console(app, static_dir())  # /operator: live calls, handoffs, take-over
    app[RESUMES] = ResumeGuard(resume_limits(settings))  # resume storms: rate, in flight
    app.router.add_get("/", _index)
    app.router.add_static("/static/", static_dir(), show_index=False)
    app.on_startup.append(_start_loading)
    app.on_shutdown.append(_close_sessions)
    return app


async def _start_loading(app: web.Application) -> None:
    state = app[STATE]
    if state.services is not None:
        return

    async def load() -> None:
        try:
            state.services = await state.load(state.settings)
            log.info("models loaded; ready")
        except Exception as exc:  # surfaced through /health/ready and /offer
            log.exception("loading models failed")
            state.load_error = f"{type(exc).__name__}: {exc}"

    state.loader = asyncio.create_task(load())


GOODBYE = {
    "en": "We are closing for maintenance now. Thank you for calling, goodbye!",
    "zh": "系统即将维护，感谢您的来电，再见！",
}


async def drain(app: web.Application, *, timeout_s: float = 10.0) -> None:
    """Graceful shutdown, step one: refuse new calls, let every avatar say goodbye (bounded),
    then hang up. Run it before the server stops accepting connections."""
    state = app[STATE]
    state.draining = True
    sessions = list(state.sessions.values())
    if timeout_s > 0:
        await asyncio.gather(
            *(
                s.say_goodbye(GOODBYE.get(s.options.language, GOODBYE["en"]), timeout_s=timeout_s)
                for s in sessions
            ),
            return_exceptions=True,
        )
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    await flush_records(app)


async def _close_sessions(app: web.Application) -> None:
    state = app[STATE]
    if state.loader is not None and not state.loader.done():
        state.loader.cancel()
    await drain(app, timeout_s=0.0)
    if state.services is not None:
        await state.services.aclose()  # background preloading


def _json_error(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers or None)


async def _offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rejected = state.metrics.rejected_total
    if state.draining:
        rejected.labels(reason="shutting_down").inc()
        return _json_error(503, "server is shutting down", **{"Retry-After": "30"})
    if state.services is None:
        rejected.labels(reason="not_ready").inc()
        reason = state.load_error or "models are still loading"
        return _json_error(503, reason, **{"Retry-After": "5"})
    limited = rate_limited(state.http_limiter, request)
    if limited is not None:
        rejected.labels(reason="rate_limited").inc()
        return limited
    bad: BadRequest | None = None
    offer: OfferRequest | None = None
    try:
        raw = await read_body(request, timeout_s=state.settings.access.body_timeout_s)
        if raw is None:
            return body_timed_out()
        offer = parse_offer(raw, max_bytes=state.settings.max_sdp_bytes)
    except BadRequest as exc:
        bad = exc
    except web.HTTPRequestEntityTooLarge:
        bad = BadRequest("offer too large", status=413)
    if offer is not None and offer.session is not None:
        return await _resume(request, state, offer)
    if state.full:
        rejected.labels(reason="busy").inc()
        return _json_error(503, "server is busy: too many calls", **{"Retry-After": "10"})
    refused = _render_room(state)
    if refused is not None:
        rejected.labels(reason="render_full").inc()
        return _json_error(503, refused.reason, **{"Retry-After": str(refused.retry_after_s)})
    if offer is None:
        assert bad is not None
        rejected.labels(reason="bad_request").inc()
        return _json_error(bad.status, bad.reason)
    services = state.services
    avatar = offer.avatar or state.settings.render.avatar
    peer = client_ip(request)
    try:
        state.check_ip_calls(peer)
        scope = state.access.authorize_call(
            offer.token or _bearer(request),
            loopback_peer=is_loopback_peer(request),
            now=time.time(),
            admit=state.check_key_calls,
        )
        scope.check_origin(request.headers.get("Origin"), own_host=request.host)
        scope.check_avatar(avatar)
    except AuthError as exc:
        if exc.status == 429:  # a per-IP or per-key call cap
            rejected.labels(reason="call_cap").inc()
            return _json_error(429, exc.reason, **{"Retry-After": "10"})
        rejected.labels(reason="unauthorized").inc()
        return _json_error(exc.status, exc.reason)
    session_id = session_id_for(request.app)  # names this node when it is one of several
    try:
        renderer = await services.renderer_for(avatar, session=session_id)
    except (KeyError, AvatarError) as exc:
        return _avatar_refused(avatar, exc)
    media = state.settings.media
    options = SessionOptions(
        avatar=avatar,
        language=offer.language,
        fps=state.settings.render.fps,
        lead_s=media.lead_ms / 1000.0,
        video_offset_s=media.video_offset_ms / 1000.0,
        heartbeat_timeout_s=state.settings.heartbeat_timeout_s,
        resume_grace_s=state.settings.resume_grace_s,
        connect_timeout_s=state.settings.access.connect_timeout_s,
        segmenter=services.segmenter_options,
        early_asr=EarlyAsrOptions(
            enabled=media.early_asr_pause_ms > 0,
            pause_ms=max(20, media.early_asr_pause_ms),
            end_after_ms=media.early_end_ms,
        ),
        adaptation=AdaptationOptions(voice_fec_loss_pct=media.voice_fec_loss_pct or None),
        handoff=handoff_options(state.settings),
    )
    bind_session(session_id)  # every log line of this call, aiortc's included, carries it
    session = Session(
        session_id=session_id,
        services=services,
        renderer=renderer,
        options=options,
        ice_servers=state.settings.ice_servers,
        on_closed=state.forget,
        metrics=state.metrics,
        observers=state.observers,
    )
    state.observers.started(
        CallInfo(
            call_id=session_id,
            avatar=options.avatar,
            language=options.language,
            started_at=time.time(),
            client=scope.name or peer,
        )
    )
    state.sessions[session_id] = session
    state.scopes[session_id] = scope
    state.peers[session_id] = peer
    state.metrics.sessions_total.inc()
    state.metrics.active_sessions.set(len(state.sessions))
    try:
        sdp = _plausible_candidates(request, state, offer.sdp)
        answer = await session.accept(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError & co. on SDP it cannot use
        await session.close()
        rejected.labels(reason="bad_sdp").inc()
        return _json_error(400, f"cannot use this offer (malformed SDP?): {exc}")
    return _answer(state, session, answer, recorded=start_recording(request.app, session))


def _answer(
    state: AppState, session: Session, answer: RTCSessionDescription, *, recorded: bool
) -> web.Response:
    return web.json_response(
        {
            "sdp": answer.sdp,
            "type": answer.type,
            "session": session.id,
            "recorded": recorded,  # records.media: the caller is told the call is recorded
            "token": state.access.signer.session_token(session.id),
            "resume_grace_s": min(
                state.settings.resume_grace_s, state.settings.heartbeat_timeout_s
            ),
            "ice_servers": state.settings.ice_servers,
        }
    )


def _plausible_candidates(request: web.Request, state: AppState, sdp: str) -> str:
    """The offer without the ICE candidates the server will not try (logged)."""
    peer = client_ip(request)
    cap = state.settings.access.max_remote_candidates
    filtered = filter_candidates(sdp, peer_ip=peer, max_candidates=cap)
    if filtered.dropped:
        log.info(
            "dropped %d of %d ICE candidates offered from %s (not plausible for it, or past %d)",
            filtered.dropped,
            filtered.dropped + filtered.kept,
            peer,
            cap,
        )
    return filtered.sdp


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() or None if auth[:7].lower() == "bearer " else None


async def _resume(request: web.Request, state: AppState, offer: OfferRequest) -> web.Response:
    """``/offer`` with ``session`` + its token: the same call on a new peer connection."""
    assert offer.session is not None
    session = state.sessions.get(offer.session)
    if session is None or session.closed.is_set():
        return _json_error(404, "unknown or expired session; start a new call")
    if not state.access.signer.check_session_token(session.id, offer.token):
        state.metrics.rejected_total.labels(reason="unauthorized").inc()
        return _json_error(401, "invalid session token")
    scope = state.scopes.get(session.id)
    try:
        if scope is not None:
            scope.check_origin(request.headers.get("Origin"), own_host=request.host)
    except AuthError as exc:
        return _json_error(exc.status, exc.reason)
    bind_session(session.id)
    try:
        with request.app[RESUMES].admit(session.id, client_ip(request), time.monotonic()):
            sdp = _plausible_candidates(request, state, offer.sdp)
            answer = await session.resume(RTCSessionDescription(sdp=sdp, type="offer"))
    except ResumeRefused as exc:  # a resume storm: the call goes on, it may resume later
        state.metrics.rejected_total.labels(reason="resume_limit").inc()
        return exc.response()
    except Exception as exc:  # a bad SDP fails this resume; the call waits for another
        log.info("session %s: resume failed: %s", session.id, exc)
        return _json_error(400, f"cannot use this offer (malformed SDP?): {exc}")
    return _answer(state, session, answer, recorded=is_recorded(request.app, session.id))


async def _issue_token(request: web.Request) -> web.Response:
    """``POST /session``: an access token for the presented API key (or anonymous)."""
    state = request.app[STATE]
    limited = rate_limited(state.http_limiter, request)
    if limited is not None:
        state.metrics.rejected_total.labels(reason="rate_limited").inc()
        return limited
    if state.draining:
        return _json_error(503, "server is shutting down", **{"Retry-After": "30"})
    try:
        body = await read_body(request, timeout_s=state.settings.access.body_timeout_s)
        if body is None:
            return body_timed_out()
        parse_session_request(body)
        scope = state.access.authenticate_key(
            presented_key(request), loopback_peer=is_loopback_peer(request)
        )
        scope.check_origin(request.headers.get("Origin"), own_host=request.host)
    except web.HTTPRequestEntityTooLarge:
        return _json_error(413, "body too large")
    except BadRequest as exc:
        return _json_error(exc.status, exc.reason)
    except AuthError as exc:
        state.metrics.rejected_total.labels(reason="unauthorized").inc()
        return _json_error(exc.status, exc.reason)
    token, expires = state.access.signer.issue(scope, now=time.time())
    return web.json_response(
        {
            "token": token,
            "expires_in_s": state.access.signer.ttl_s,
            "expires_at": expires,
            "avatars": sorted(scope.avatars) if scope.avatars is not None else None,
        }
    )


async def _ws(request: web.Request) -> web.StreamResponse:
    return await control_socket(request, request.app[STATE])


async def _live(request: web.Request) -> web.Response:
    """Alive, unless render work hung on every GPU: only a new process frees a device whose
    kernel or driver call never returns, so an orchestrator should restart this one."""
    if not _render_ok(request.app[STATE]):
        return web.json_response({"status": "render_stalled"}, status=503)
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    """Ready: models loaded, the GPU usable where the renderer needs one (and not hung on
    every device), below the cap."""
    state = request.app[STATE]
    sessions = len(state.sessions)
    if state.ready and not state.draining and not state.full and _gpu_ok(state):
        return web.json_response({"status": "ready", "sessions": sessions})
    if state.load_error:
        body: dict[str, Any] = {"status": "error", "error": state.load_error}
    elif not state.ready:
        body = {"status": "loading"}
    elif state.draining:
        body = {"status": "shutting_down"}
    elif state.full:
        body = {"status": "full", "sessions": sessions}
    elif not _render_ok(state):
        body = {"status": "render_stalled"}
    else:
        body = {"status": "gpu_unavailable"}
    return web.json_response(body, status=503)


def _render_ok(state: AppState) -> bool:
    """False once the renderer factory reports no device can render (``healthy``: the
    MuseTalk service after every GPU's render work hung; a restart of the process fixes it)."""
    renderers = state.services.renderers if state.services is not None else None
    return not isinstance(renderers, HealthReporter) or renderers.healthy


def _render_room(state: AppState) -> Refusal | None:
    """Why the render cluster cannot take a new call now (None: it can, or no cluster)."""
    renderers = state.services.renderers if state.services is not None else None
    return renderers.admit() if isinstance(renderers, Admission) else None


def _gpu_ok(state: AppState) -> bool:
    if not _render_ok(state):
        return False
    if state.settings.render.renderer != "musetalk" or state.settings.render.cluster:
        return True  # a media node of a render cluster needs no GPU of its own
    import torch

    return bool(torch.cuda.is_available())


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.metrics.enabled:
        return _json_error(404, "metrics are turned off (metrics_enabled: false)")
    if state.settings.render.renderer == "musetalk" and not state.settings.render.cluster:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                used = torch.cuda.memory_allocated(i)
                state.metrics.gpu_memory_bytes.labels(device=f"cuda:{i}").set(used)
    if state.services is not None:
        state.metrics.sync_cache(state.services.cache_stats())
        if isinstance(state.services.renderers, ClusterStatus):
            state.metrics.sync_cluster(state.services.renderers.cluster_state())
    for session in state.sessions.values():
        session.sync_metrics()
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _avatar_refused(avatar: str, exc: Exception) -> web.Response:
    """400 for an avatar that cannot be used: a name outside ``NAME_PATTERN``, no such
    avatar, or a damaged one (logged; the answer names no server path)."""
    if isinstance(exc, InvalidName):
        return _json_error(400, str(exc))
    if isinstance(exc, CorruptAvatar):
        log.error("avatar %r cannot be loaded: %s", avatar, exc)
        return _json_error(400, f"avatar {avatar!r} is unavailable: its prepared files are damaged")
    return _json_error(400, f"unknown avatar {avatar!r}")


async def _avatars(request: web.Request) -> web.Response:
    state = request.app[STATE]
    names = state.services.avatar_names() if state.services is not None else []
    return web.json_response({"avatars": names, "default": state.settings.render.avatar})


async def _index(request: web.Request) -> web.StreamResponse:
    index = static_dir() / "index.html"
    if not index.is_file():
        return _json_error(404, "call page not installed")
    return web.FileResponse(index)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The connection caps and timeouts the settings describe."""
    a = settings.access
    return ConnectionLimits(
        max_connections=a.max_connections,
        max_per_ip=a.max_connections_per_ip,
        idle_timeout_s=a.idle_timeout_s,
    )


async def serve(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Run until SIGINT/SIGTERM, then drain (goodbyes) before closing the listener
    (HTTPS with ``ssl_context``)."""
    import signal

    limits = connection_limits(app[STATE].settings)
    server = await start_server(
        app,
        host=host,
        port=port,
        limits=limits,
        access_log_class=RedactedAccessLogger,
        ssl_context=ssl_context,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: saying goodbye to %d call(s)", len(app[STATE].sessions))
        await drain(app)
    finally:
        await server.close()
