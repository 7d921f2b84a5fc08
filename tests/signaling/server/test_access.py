"""Access control in the app: keys → tokens → calls, scopes, origins, rate limits, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr

from signaling.client.bot import BotError, BotOptions, run_bot
from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.server.auth import KeyScope
from signaling.server.guard import RedactedAccessLogger
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
BACKEND_KEY = "backend-key-0123456789"
KIOSK_KEY = "kiosk-key-0123456789"
KIOSK = "https://kiosk.example"
SDP = (  # passes the offer's checks, so the token is looked at
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
)


@pytest.fixture
def protected(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "access": Settings.model_validate(
                {
                    "access": {
                        "keys": [
                            {"name": "backend", "key": BACKEND_KEY},
                            {
                                "name": "kiosk",
                                "key": KIOSK_KEY,
                                "avatars": ["astronaut"],
                                "origins": [KIOSK],
                            },
                        ],
                        "token_secret": "t" * 32,
                    }
                }
            ).access
        }
    )


async def post(url: str, body: object = None, **headers: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def test_keys_tokens_and_scopes(
    protected: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(protected, services=fake_services)
    url = await serve(app)
    assert (await post(url + "/session"))[0] == 401  # loopback is no pass once keys exist
    status, body = await post(url + "/session", Authorization="Bearer wrong-key-0123456789")
    assert status == 401 and body["error"] == "invalid API key"
    status, body = await post(url + "/session", {"x": 1}, Authorization=f"Bearer {BACKEND_KEY}")
    assert status == 400
    status, body = await post(url + "/session", **{"X-API-Key": KIOSK_KEY})
    assert status == 403 and "Origin" in str(body["error"])  # kiosk keys are origin-bound
    status, body = await post(url + "/session", Authorization=f"Bearer {KIOSK_KEY}", Origin=KIOSK)
    assert status == 200 and body["avatars"] == ["astronaut"]

    with pytest.raises(OfferRefused) as refused:
        await ProbeCall(ProbeOptions(url=url)).connect()
    assert refused.value.status == 401
    expired, _ = app[STATE].access.signer.issue(KeyScope(name="backend"), now=time.time() - 999)
    with pytest.raises(OfferRefused, match="expired"):
        await ProbeCall(ProbeOptions(url=url, token=expired)).connect()
    kiosk_other = ProbeOptions(url=url, api_key=KIOSK_KEY, origin=KIOSK, avatar="other")
    with pytest.raises(OfferRefused) as refused:
        await ProbeCall(kiosk_other).connect()
    assert refused.value.status == 403 and "avatar" in refused.value.reason

    async with ProbeCall(ProbeOptions(url=url, api_key=KIOSK_KEY, origin=KIOSK)) as call:
        assert "nine to five" in await call.ask("When are you open?", wait_end=False)
        token = call.session_token
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{url}/ws", params={"session": call.session_id})
            await ws.receive()
            assert ws.close_code == 4401
            ws = await http.ws_connect(
                f"{url}/ws", params={"session": call.session_id, "token": token + "x"}
            )
            await ws.receive()
            assert ws.close_code == 4401
            with pytest.raises(aiohttp.WSServerHandshakeError):  # another page's origin
                await http.ws_connect(
                    f"{url}/ws",
                    params={"session": call.session_id, "token": token},
                    headers={"Origin": "https://evil.example"},
                )
            # the kiosk's own call, reopened from a script without its page's origin
            ws = await http.ws_connect(
                f"{url}/ws", params={"session": call.session_id, "token": token}
            )
            await ws.receive()
            assert ws.close_code == 4403
    async with ProbeCall(ProbeOptions(url=url, api_key=BACKEND_KEY)) as call:
        assert "nine to five" in await call.ask("Hours?", wait_end=False)


async def test_an_access_token_starts_one_call(
    protected: Settings, fake_services: Services, serve: Serve
) -> None:
    url = await serve(create_app(protected, services=fake_services))
    status, body = await post(url + "/session", Authorization=f"Bearer {BACKEND_KEY}")
    assert status == 200
    token = str(body["token"])
    async with ProbeCall(ProbeOptions(url=url, token=token)) as call:
        with pytest.raises(OfferRefused) as refused:
            await ProbeCall(ProbeOptions(url=url, token=token)).connect()
        assert refused.value.status == 401 and "already used" in refused.value.reason
        offer = {"sdp": SDP, "type": "offer"}
        status, body = await post(url + "/offer", offer, Authorization=f"Bearer {token}")
        assert status == 401 and "already used" in str(body["error"])
        # The call itself goes on: its session token reopens the socket and resumes it.
        first = call.session_id
        await call.resume()
        await call.resume()
        assert call.session_id == first
        assert "nine to five" in await call.ask("Hours?", wait_end=False)


async def test_origin_allow_list_cors_and_embedding(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    allowed = "https://shop.example"
    s = settings.model_copy(
        update={"access": settings.access.model_copy(update={"allowed_origins": [allowed]})}
    )
    url = await serve(create_app(s, services=fake_services))
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        async with http.get(url + "/", headers={"Origin": url}) as r:
            assert r.status == 200
            assert r.headers["Content-Security-Policy"] == f"frame-ancestors 'self' {allowed}"
        async with http.post(url + "/session", headers={"Origin": "null"}) as r:
            assert r.status == 403
        async with http.options(
            url + "/offer",
            headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
        ) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == allowed
        async with http.post(url + "/session", headers={"Origin": allowed}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == allowed
        async with http.get(url + "/health/live", headers={"Origin": "https://x.example"}) as r:
            assert r.status == 200


async def test_anonymous_callers_only_on_loopback(fake_services: Services, serve: Serve) -> None:
    s = Settings(host="127.0.0.1", port=0)
    app = create_app(s, services=fake_services)
    url = await serve(app)
    assert (await post(url + "/session"))[0] == 200  # loopback, no key configured: open
    policy = app[STATE].access
    assert policy.options.anonymous == "loopback" and not policy.protected


async def test_rate_limits(settings: Settings, fake_services: Services, serve: Serve) -> None:
    access = settings.access.model_copy(
        update={
            "requests_per_s": 0.5,
            "request_burst": 3,
            "messages_per_s": 1.0,
            "message_burst": 2,
        }
    )
    app = create_app(settings.model_copy(update={"access": access}), services=fake_services)
    url = await serve(app)
    statuses = [(await post(url + "/session"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/offer", json={}) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    app[STATE].http_limiter.forget("127.0.0.1")
    async with ProbeCall(ProbeOptions(url=url, timeout_s=10)) as call:
        assert call.ws is not None
        for _ in range(60):
            if call.ws.closed:
                break
            await call.ws.send_json({"type": "ping"})
        for _ in range(100):
            if call.ws_close_code is not None:
                break
            await asyncio.sleep(0.02)
        assert call.ws_close_code == 1008
        assert any(
            e.get("type") == "error" and "too many" in str(e.get("reason")) for e in call.events
        )
        # The flood cost the socket, not the call: it can reconnect.
        start = len(call.events)
        await call.open_ws()
        await call.wait_event("hello", start=start)


def test_access_log_and_config_never_hold_secrets(
    protected: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/ws?session=abc&token=s1.SECRETTOKEN")
    with caplog.at_level(logging.INFO, logger="test.access"):
        RedactedAccessLogger(logger, "").log(request, web.Response(status=101), 0.01)
    assert "/ws" in caplog.text and "SECRETTOKEN" not in caplog.text
    dumped = json.dumps(protected.model_copy(update={"api_key": SecretStr("a" * 20)}).masked())
    for secret in (BACKEND_KEY, KIOSK_KEY, "t" * 32, "a" * 20):
        assert secret not in dumped


async def test_bot_calls_with_an_api_key(
    protected: Settings, fake_services: Services, serve: Serve
) -> None:
    url = await serve(create_app(protected, services=fake_services))
    with pytest.raises(BotError, match="401"):
        await run_bot(BotOptions(url=url, text="Hours?", timeout_s=10))
    report = await run_bot(
        BotOptions(url=url, text="When are you open?", api_key=BACKEND_KEY, timeout_s=20)
    )
    assert not report.errors, report.errors
    assert "nine to five" in report.reply_text
